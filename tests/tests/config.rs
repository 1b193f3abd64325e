#![allow(missing_docs)]
//! Configuration: one precedence (builder over environment over file over defaults), errors that
//! name the file and line or the variable, and a pool started from it.

mod support;

use std::path::Path;

use dspex::prelude::*;
use dspex::{Config, ConfigError};
use support::run;

const FILE: &str = r#"
workers = 2
request_timeout = 30
worker_max_age = 3600

[lm]
model = "anthropic/claude-sonnet-4"
temperature = 0.1

[lm.kwargs]
top_p = 0.9
num_retries = 3
"#;

fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

fn file() -> Option<(&'static Path, &'static str)> {
    Some((Path::new("dspex.toml"), FILE))
}

#[test]
fn the_environment_wins_over_the_file_which_wins_over_the_defaults() {
    let defaults = Config::from_sources(None, env(&[])).unwrap();
    assert_eq!(defaults, Config::default());
    assert!(defaults.lm().is_none());

    let from_file = Config::from_sources(file(), env(&[])).unwrap();
    assert_eq!(from_file.workers, Some(2));
    assert_eq!(from_file.request_timeout, Some(30.0));
    let lm = from_file.lm().unwrap();
    assert_eq!(lm.model(), Some("anthropic/claude-sonnet-4"));

    let both = Config::from_sources(
        file(),
        env(&[
            ("DSPEX_WORKERS", "5"),
            ("DSPEX_LM", "openai/gpt-4o-mini"),
            ("DSPEX_IMPORTS", "my_tools, other"),
            ("DSPEX_PYTHON_PATH", "/a:/b"),
        ]),
    )
    .unwrap();
    assert_eq!(both.workers, Some(5));
    assert_eq!(both.lm().unwrap().model(), Some("openai/gpt-4o-mini"));
    assert_eq!(
        both.lm.temperature,
        Some(0.1),
        "the file's, where the environment is silent"
    );
    assert_eq!(both.imports, ["my_tools", "other"]);
    assert_eq!(both.python_path, [Path::new("/a"), Path::new("/b")]);
}

#[test]
fn bad_settings_name_their_line_or_variable() {
    let error = Config::from_sources(
        Some((Path::new("conf/dspex.toml"), "workers = 2\nworkres = 3\n")),
        env(&[]),
    )
    .unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(&error, Error::Config(ConfigError::Parse { .. }))
            && text.contains("conf/dspex.toml")
            && text.contains("line 2")
            && text.contains("workres"),
        "{text}"
    );
    let error = Config::from_sources(None, env(&[("DSPEX_WORKERS", "many")])).unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Config(ConfigError::Variable {
                variable: "DSPEX_WORKERS",
                ..
            })
        ),
        "{error}"
    );
    let error = Config::from_sources(None, env(&[("DSPEX_WORKER_MAX_REQUESTS", "0")])).unwrap_err();
    assert!(
        error.to_string().contains("DSPEX_WORKER_MAX_REQUESTS"),
        "{error}"
    );
    let error =
        Config::from_sources(None, env(&[("DSPEX_RAY_ADDRESS", "head-without-port")])).unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Config(ConfigError::Variable {
                variable: "DSPEX_RAY_ADDRESS",
                ..
            })
        ),
        "{error}"
    );
    let error = Config::from_sources(None, env(&[("DSPEX_LM_ADAPTER", "yaml")])).unwrap_err();
    assert!(error.to_string().contains("chat, json or xml"), "{error}");
    let error = Config::from_sources(
        Some((Path::new("dspex.toml"), "[lm]\nmax_tokens = \"lots\"\n")),
        env(&[]),
    )
    .unwrap_err();
    assert!(error.to_string().contains("max_tokens"), "{error}");
}

#[test]
fn the_ray_address_comes_from_the_file_or_the_environment() {
    let toml = "ray_address = \"10.0.0.5:6379\"\n";
    let from_file = Config::from_sources(Some((Path::new("dspex.toml"), toml)), env(&[])).unwrap();
    assert_eq!(from_file.ray_address.as_deref(), Some("10.0.0.5:6379"));
    let both = Config::from_sources(
        Some((Path::new("dspex.toml"), toml)),
        env(&[("DSPEX_RAY_ADDRESS", "ray://head:10001")]),
    )
    .unwrap();
    assert_eq!(both.ray_address.as_deref(), Some("ray://head:10001"));
    let builder = format!("{:?}", both.apply(Dspex::builder()));
    assert!(builder.contains("ray://head:10001"), "{builder}");
    assert_eq!(
        Config::from_sources(None, env(&[])).unwrap().ray_address,
        None
    );
}

#[test]
fn a_pool_started_from_the_configuration_and_the_builder_over_it() {
    run(async {
        let config = Config::from_sources(
            file(),
            env(&[
                ("DSPEX_WORKERS", "1"),
                ("DSPEX_WORKER_MAX_REQUESTS", "500"),
                ("DSPEX_WORKER_MAX_MEMORY_MB", "2048"),
            ]),
        )
        .unwrap();
        let dspex = config
            .apply(Dspex::builder())
            .lm(Lm::dummy(Value::List(Vec::new())))
            .start()
            .await
            .unwrap();
        assert_eq!(
            dspex.bridge().pool().stats().size,
            1,
            "the environment's 1, not the file's 2"
        );
        let pool = dspex.bridge().pool().config();
        assert_eq!(
            (pool.max_requests, pool.max_age, pool.max_memory),
            (
                Some(500),
                Some(std::time::Duration::from_secs(3600)),
                Some(2048 << 20)
            ),
            "recycling limits from the environment and the file"
        );
        dspex.shutdown().await.unwrap();
        // (The configured LM needs ANTHROPIC_API_KEY in the workers, which a worker checks as it
        // starts; the builder's LM wins over it, as the builder's worker count does.)
        let dspex = config
            .apply(Dspex::builder())
            .workers(2)
            .lm(Lm::dummy(Value::List(Vec::new())))
            .start()
            .await
            .unwrap();
        assert_eq!(dspex.bridge().pool().stats().size, 2, "the builder's 2");
        dspex.shutdown().await.unwrap();
    })
}

use dspex::Value;
