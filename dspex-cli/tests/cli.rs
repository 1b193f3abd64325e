#![allow(missing_docs)]
//! The `dspex` command, run as a process: every subcommand, its output and its exit status, on a
//! healthy installation and on broken ones.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// The rule LM of the optimize example (answers `<qN>` with `aN`, queries with `find-qN`).
fn examples_python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dspex/examples/python")
}

/// `dspex` in an empty directory (no `dspex.toml`), without the caller's DSPEX_* settings.
fn dspex(dir: &Path) -> Command {
    let mut command = Command::cargo_bin("dspex").unwrap();
    command.current_dir(dir);
    for variable in [
        "DSPEX_LM",
        "DSPEX_LM_CLASS",
        "DSPEX_CONFIG",
        "DSPEX_WORKERS",
        "DSPEX_PYTHON",
        "DSPEX_PYTHON_PATH",
        "DSPEX_IMPORTS",
        "OPENAI_API_KEY",
    ] {
        command.env_remove(variable);
    }
    command
}

fn output(command: &mut Command) -> (String, String, i32) {
    let output = command.output().unwrap();
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        output.status.code().unwrap_or(-1),
    )
}

#[test]
fn help_lists_the_commands_and_a_wrong_one_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, _, code) = output(dspex(dir.path()).arg("--help"));
    assert_eq!(code, 0);
    for command in ["setup", "doctor", "run", "status", "cache"] {
        assert!(stdout.contains(command), "{stdout}");
    }
    let (_, stderr, code) = output(dspex(dir.path()).arg("frobnicate"));
    assert_eq!(code, 2);
    assert!(stderr.contains("unrecognized subcommand"), "{stderr}");
}

#[test]
fn run_prints_the_typed_outputs_of_an_ad_hoc_signature() {
    let dir = tempfile::tempdir().unwrap();
    let with_lm = |command: &mut Command| {
        command
            .env("DSPEX_LM_CLASS", "dspex_rule_lm.RuleLM")
            .env("DSPEX_PYTHON_PATH", examples_python());
    };
    let mut command = dspex(dir.path());
    with_lm(&mut command);
    let (stdout, stderr, code) =
        output(command.args(["run", "question -> query, answer", "question=<q3>"]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "query: find-q3\nanswer: a3\n");

    let mut command = dspex(dir.path());
    with_lm(&mut command);
    let (stdout, stderr, code) = output(command.args([
        "run",
        "question: str, n: int -> answer",
        "question=<q4>",
        "n=2",
        "--json",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json, serde_json::json!({"answer": "a4"}));

    // Mistakes in the arguments: exit status 2, and what is wrong.
    for (args, message) in [
        (vec!["run", "question answer", "question=x"], "no `->`"),
        (
            vec!["run", "question -> answer"],
            "no value for the input `question`",
        ),
        (
            vec!["run", "question -> answer", "q=x"],
            "`q` is not an input",
        ),
        (
            vec!["run", "n: int -> answer", "n=many"],
            "expected an integer",
        ),
    ] {
        let mut command = dspex(dir.path());
        with_lm(&mut command);
        let (_, stderr, code) = output(command.args(&args));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }

    // --stream prints the same lines, each field as the LM writes it.
    let streamed = tempfile::tempdir().unwrap();
    std::fs::write(
        streamed.path().join("dspex.toml"),
        r#"
[lm]
class = "dspex_stream_lm.StreamLM"

[lm.kwargs]
delay_ms = 5

[lm.kwargs.answers."<s1>"]
reasoning = "It was asked."
answer = "streamed, piece by piece"
"#,
    )
    .unwrap();
    for (extra, expected) in [
        (None, "answer: streamed, piece by piece\n"),
        (
            Some("--chain-of-thought"),
            "reasoning: It was asked.\nanswer: streamed, piece by piece\n",
        ),
    ] {
        let mut command = dspex(streamed.path());
        command.env("DSPEX_PYTHON_PATH", examples_python());
        let mut args = vec!["run", "question -> answer", "question=<s1>", "--stream"];
        args.extend(extra);
        let (stdout, stderr, code) = output(command.args(&args));
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(stdout, expected);
    }

    // No LM configured: says how to configure one.
    let (_, stderr, code) = output(dspex(dir.path()).args(["run", "q -> a", "q=x"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("no LM: set DSPEX_LM"), "{stderr}");
}

#[test]
fn doctor_passes_a_healthy_installation_and_names_each_problem_with_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, stderr, code) = output(dspex(dir.path()).arg("doctor"));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for line in [
        "ok       interpreter",
        "ok       imports",
        "ok       worker",
        "no problems found",
    ] {
        assert!(stdout.contains(line), "{line}: {stdout}");
    }

    // A broken interpreter.
    let (stdout, _, code) = output(
        dspex(dir.path())
            .arg("doctor")
            .env("DSPEX_PYTHON", "/nonexistent/python3"),
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("PROBLEM  Python environment") && stdout.contains("fix:"),
        "{stdout}"
    );

    // The LM's key variable: missing is a problem; present, its value is never printed.
    let (stdout, _, code) = output(
        dspex(dir.path())
            .args(["doctor", "--no-worker"])
            .env("DSPEX_LM", "openai/gpt-4o-mini"),
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("PROBLEM  LM key: OPENAI_API_KEY is not set"),
        "{stdout}"
    );
    let secret = "sk-test-do-not-print-4242";
    let (stdout, stderr, code) = output(
        dspex(dir.path())
            .args(["doctor", "--no-worker"])
            .env("DSPEX_LM", "openai/gpt-4o-mini")
            .env("OPENAI_API_KEY", secret),
    );
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("OPENAI_API_KEY is set"), "{stdout}");
    assert!(!stdout.contains(secret) && !stderr.contains(secret));

    // A configuration file that does not parse.
    std::fs::write(dir.path().join("dspex.toml"), "workers = \"two\"\n").unwrap();
    let (stdout, _, code) = output(dspex(dir.path()).args(["doctor", "--no-worker"]));
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("PROBLEM  configuration") && stdout.contains("dspex.toml"),
        "{stdout}"
    );
}

#[test]
fn status_lists_a_live_run_and_its_workers() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let pool = runtime.block_on(async {
        dspex::Dspex::builder()
            .workers(2)
            .start()
            .await
            .expect("a pool")
    });
    let run_id = pool.bridge().pool().run_id().to_owned();
    let (stdout, _, code) = output(dspex(dir.path()).arg("status"));
    assert_eq!(code, 0);
    assert!(stdout.contains(&format!("run {run_id}")), "{stdout}");
    assert!(
        stdout.contains("2 workers") && stdout.contains("worker 1  pid"),
        "{stdout}"
    );
    runtime.block_on(pool.shutdown()).unwrap();
    let (stdout, _, _) = output(dspex(dir.path()).arg("status"));
    assert!(!stdout.contains(&run_id), "{stdout}");
}

#[test]
fn setup_with_ray_provisions_the_environment_with_ray() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, stderr, code) = output(dspex(dir.path()).args(["setup", "--ray"]));
    assert_eq!(code, 0, "{stderr}");
    let python = stdout
        .strip_prefix("ready: ")
        .and_then(|rest| rest.split(" (").next())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        python.contains("-ray/"),
        "an environment of its own: {stdout}"
    );
    let imported = std::process::Command::new(python)
        .args(["-c", "import ray, dspy"])
        .status()
        .unwrap();
    assert!(imported.success(), "Ray and DSPy import in it");
}

#[test]
fn setup_provisions_a_cold_cache_and_cache_prune_removes_what_earlier_locks_left() {
    let cache = tempfile::tempdir().unwrap();
    let (stdout, stderr, code) = output(
        dspex(cache.path())
            .arg("setup")
            .env("DSPEX_CACHE_DIR", cache.path()),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("ready: ") && stdout.contains("managed environment"),
        "{stdout}"
    );
    assert!(
        stderr.contains("creating the Python environment"),
        "progress: {stderr}"
    );

    let old = cache.path().join("venvs/py3.11.0-0123456789abcdef");
    std::fs::create_dir_all(old.join("bin")).unwrap();
    std::fs::write(old.join("requirements.lock"), "dspy==2.0\n").unwrap();
    std::fs::write(old.join(".dspex-ready"), "").unwrap();
    let (stdout, _, code) = output(
        dspex(cache.path())
            .args(["cache", "prune"])
            .env("DSPEX_CACHE_DIR", cache.path()),
    );
    assert_eq!(code, 0);
    assert_eq!(stdout, format!("removed {}\n", old.display()));
    assert!(!old.exists());
    // The environment setup made stays.
    let (stdout, _, _) = output(
        dspex(cache.path())
            .args(["cache", "prune"])
            .env("DSPEX_CACHE_DIR", cache.path()),
    );
    assert!(stdout.starts_with("nothing to prune"), "{stdout}");
}
