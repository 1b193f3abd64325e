//! Configuration without code: a `dspex.toml` file and `DSPEX_*` variables, under the builder.
//!
//! One precedence: what the builder sets wins over the environment, which wins over the file,
//! which wins over the defaults. [`Dspex::from_env`] starts a pool from the file and the
//! environment alone; [`Dspex::configured`] gives the builder they make, for code to adjust.
//!
//! | setting | `dspex.toml` | variable | default |
//! |---|---|---|---|
//! | the LM (a LiteLLM model string) | `[lm] model` | `DSPEX_LM` | none: calls fail until one is set |
//! | its API key variable | `[lm] api_key_env` | `DSPEX_LM_API_KEY_ENV` | the provider's usual one ([`Lm::for_model`]) |
//! | its base URL | `[lm] api_base` | `DSPEX_LM_API_BASE` | the provider's |
//! | temperature | `[lm] temperature` | `DSPEX_LM_TEMPERATURE` | the provider's |
//! | completion token limit | `[lm] max_tokens` | `DSPEX_LM_MAX_TOKENS` | the provider's |
//! | prompt format | `[lm] adapter` (`chat`, `json`, `xml`) | `DSPEX_LM_ADAPTER` | `chat` |
//! | other `dspy.LM` arguments | `[lm.kwargs]` (`top_p = 0.9`, `num_retries = 3`) | — | none |
//! | instead of a model, an LM class of your own (`dspy.BaseLM`), created with `[lm.kwargs]` | `[lm] class` | `DSPEX_LM_CLASS` | none |
//! | workers | `workers` | `DSPEX_WORKERS` | 2 |
//! | request timeout, seconds | `request_timeout` | `DSPEX_REQUEST_TIMEOUT` | 120 |
//! | recycle a worker after this many requests | `worker_max_requests` | `DSPEX_WORKER_MAX_REQUESTS` | never |
//! | recycle a worker after this many seconds | `worker_max_age` | `DSPEX_WORKER_MAX_AGE` | never |
//! | recycle a worker above this much memory, MiB | `worker_max_memory_mb` | `DSPEX_WORKER_MAX_MEMORY_MB` | never |
//! | Python interpreter (instead of the managed environment) | `python` | `DSPEX_PYTHON` | the managed environment |
//! | directories on the workers' `PYTHONPATH` | `python_path = [...]` | `DSPEX_PYTHON_PATH` (`:`-separated) | none |
//! | modules each worker imports | `imports = [...]` | `DSPEX_IMPORTS` (`,`-separated) | none |
//! | run the workers on a Ray cluster (`host:port`, `ray://host:10001`) | `ray_address` | `DSPEX_RAY_ADDRESS` | this machine |
//!
//! The file is `DSPEX_CONFIG` when set (it must exist), else `dspex.toml` in the current
//! directory when there is one. Unknown keys, and values of the wrong type, are errors that name
//! the file and line, or the variable.
//!
//! ```
//! let toml = "workers = 3\n[lm]\nmodel = \"openai/gpt-4o-mini\"\n[lm.kwargs]\ntop_p = 0.9\n";
//! let env = |name: &str| (name == "DSPEX_WORKERS").then(|| "4".to_owned());
//! let config = dspex::Config::from_sources(Some(("dspex.toml".as_ref(), toml)), env)?;
//! assert_eq!(config.workers, Some(4));     // the environment over the file
//! assert_eq!(config.lm().unwrap().model(), Some("openai/gpt-4o-mini"));
//! # Ok::<(), dspex::Error>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use snakepit_grpc_bridge::Value;
use snakepit_grpc_bridge::api::dspy::{Lm, LmAdapter};

use crate::dspex::{Dspex, DspexBuilder};
use crate::error::Result;

/// The file looked for in the current directory.
pub const CONFIG_FILE: &str = "dspex.toml";

/// Why a configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or not dspex's keys and types.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
    /// A variable does not hold what its setting takes.
    #[error("{variable}={value:?}: {expected}")]
    Variable {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
}

/// The `[lm]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LmSettings {
    /// A LiteLLM model string.
    pub model: Option<String>,
    /// Instead of a model: a `dspy.BaseLM` subclass by dotted path, importable in the workers
    /// (created with `kwargs`).
    pub class: Option<String>,
    /// The variable holding the API key.
    pub api_key_env: Option<String>,
    /// The base URL.
    pub api_base: Option<String>,
    /// The sampling temperature.
    pub temperature: Option<f64>,
    /// The completion token limit.
    pub max_tokens: Option<u32>,
    /// `chat`, `json` or `xml`.
    pub adapter: Option<String>,
    /// Other keyword arguments of `dspy.LM`.
    #[serde(default)]
    pub kwargs: BTreeMap<String, toml::Value>,
}

/// dspex's configuration from a file and the environment; see the [module](self) documentation.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The LM.
    #[serde(default)]
    pub lm: LmSettings,
    /// Number of workers.
    pub workers: Option<usize>,
    /// The pool's request timeout, in seconds.
    pub request_timeout: Option<f64>,
    /// Recycle a worker after it served this many requests.
    pub worker_max_requests: Option<u64>,
    /// Recycle a worker after it has been up this many seconds.
    pub worker_max_age: Option<f64>,
    /// Recycle a worker whose resident memory is above this many MiB.
    pub worker_max_memory_mb: Option<u64>,
    /// An interpreter to use as it is.
    pub python: Option<PathBuf>,
    /// Directories on the workers' `PYTHONPATH`.
    #[serde(default)]
    pub python_path: Vec<PathBuf>,
    /// Modules each worker imports.
    #[serde(default)]
    pub imports: Vec<String>,
    /// The Ray cluster the workers run on (see
    /// [`DspexBuilder::ray`](crate::DspexBuilder::ray)); `None`: this machine.
    pub ray_address: Option<String>,
}

fn parse<T: std::str::FromStr>(
    env: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    expected: &'static str,
) -> Result<Option<T>, ConfigError> {
    match env(variable) {
        None => Ok(None),
        Some(value) if value.trim().is_empty() => Ok(None),
        Some(value) => value
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ConfigError::Variable {
                variable,
                value,
                expected,
            }),
    }
}

impl Config {
    /// The configuration of this process: the file (`DSPEX_CONFIG`, else `./dspex.toml` if
    /// present) under the `DSPEX_*` variables.
    pub fn load() -> Result<Config> {
        let path = match std::env::var_os("DSPEX_CONFIG") {
            Some(path) => Some(PathBuf::from(path)),
            None => Some(PathBuf::from(CONFIG_FILE)).filter(|p| p.exists()),
        };
        let text = match &path {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                        path: path.clone(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let file = path.as_deref().zip(text.as_deref());
        Config::from_sources(file, |name| std::env::var(name).ok())
    }

    /// The configuration from a file's text (if any) under variables read by `env`.
    pub fn from_sources(
        file: Option<(&Path, &str)>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config> {
        let mut config: Config = match file {
            Some((path, text)) => toml::from_str(text).map_err(|e| ConfigError::Parse {
                path: path.to_owned(),
                message: e.to_string().trim_end().to_owned(),
            })?,
            None => Config::default(),
        };
        let text = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if let Some(model) = text("DSPEX_LM") {
            config.lm.model = Some(model);
            config.lm.class = None;
        }
        if let Some(class) = text("DSPEX_LM_CLASS") {
            config.lm.class = Some(class);
            config.lm.model = None;
        }
        if let Some(variable) = text("DSPEX_LM_API_KEY_ENV") {
            config.lm.api_key_env = Some(variable);
        }
        if let Some(url) = text("DSPEX_LM_API_BASE") {
            config.lm.api_base = Some(url);
        }
        if let Some(adapter) = text("DSPEX_LM_ADAPTER") {
            config.lm.adapter = Some(adapter);
        }
        let env = &env;
        if let Some(t) = parse(env, "DSPEX_LM_TEMPERATURE", "a number")? {
            config.lm.temperature = Some(t);
        }
        if let Some(n) = parse(env, "DSPEX_LM_MAX_TOKENS", "a whole number")? {
            config.lm.max_tokens = Some(n);
        }
        if let Some(n) = parse(env, "DSPEX_WORKERS", "a whole number of workers")? {
            config.workers = Some(n);
        }
        if let Some(s) = parse(env, "DSPEX_REQUEST_TIMEOUT", "a number of seconds")? {
            config.request_timeout = Some(s);
        }
        if let Some(n) = parse(
            env,
            "DSPEX_WORKER_MAX_REQUESTS",
            "a whole number of requests",
        )? {
            config.worker_max_requests = Some(n);
        }
        if let Some(s) = parse(env, "DSPEX_WORKER_MAX_AGE", "a number of seconds")? {
            config.worker_max_age = Some(s);
        }
        if let Some(n) = parse(env, "DSPEX_WORKER_MAX_MEMORY_MB", "a whole number of MiB")? {
            config.worker_max_memory_mb = Some(n);
        }
        if let Some(python) = text("DSPEX_PYTHON") {
            config.python = Some(PathBuf::from(python));
        }
        if let Some(paths) = text("DSPEX_PYTHON_PATH") {
            config.python_path = std::env::split_paths(&paths).collect();
        }
        if let Some(address) = text(snakepit_grpc_bridge::RAY_ADDRESS_ENV) {
            config.ray_address = Some(address.trim().to_owned());
        }
        if let Some(imports) = text("DSPEX_IMPORTS") {
            config.imports = imports
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |variable, value: String, expected| ConfigError::Variable {
            variable,
            value,
            expected,
        };
        if let Some(adapter) = &self.lm.adapter
            && !matches!(adapter.as_str(), "chat" | "json" | "xml")
        {
            return Err(bad(
                "DSPEX_LM_ADAPTER",
                adapter.clone(),
                "chat, json or xml",
            ));
        }
        if self.workers == Some(0) {
            return Err(bad("DSPEX_WORKERS", "0".into(), "at least one worker"));
        }
        if let Some(address) = &self.ray_address
            && snakepit_grpc_bridge::RayPlacement::new(address.clone())
                .check()
                .is_err()
        {
            return Err(bad(
                snakepit_grpc_bridge::RAY_ADDRESS_ENV,
                address.clone(),
                "host:port, ray://host:port or auto",
            ));
        }
        if let Some(seconds) = self.request_timeout
            && !(seconds.is_finite() && seconds > 0.0)
        {
            return Err(bad(
                "DSPEX_REQUEST_TIMEOUT",
                seconds.to_string(),
                "a positive number of seconds",
            ));
        }
        if self.worker_max_requests == Some(0) {
            return Err(bad(
                "DSPEX_WORKER_MAX_REQUESTS",
                "0".into(),
                "at least one request",
            ));
        }
        if let Some(seconds) = self.worker_max_age
            && !(seconds.is_finite() && seconds > 0.0)
        {
            return Err(bad(
                "DSPEX_WORKER_MAX_AGE",
                seconds.to_string(),
                "a positive number of seconds",
            ));
        }
        if self.worker_max_memory_mb == Some(0) {
            return Err(bad(
                "DSPEX_WORKER_MAX_MEMORY_MB",
                "0".into(),
                "at least one MiB",
            ));
        }
        Ok(())
    }

    /// The configured LM, if a model or a class is set: [`Lm::for_model`] (the provider's key
    /// variable) with the other `[lm]` settings, or [`Lm::custom`] of the class with `kwargs`.
    pub fn lm(&self) -> Option<Lm> {
        let settings = &self.lm;
        let adapter = match settings.adapter.as_deref() {
            Some("json") => LmAdapter::Json,
            Some("xml") => LmAdapter::Xml,
            _ => LmAdapter::Chat,
        };
        if let Some(class) = &settings.class {
            let kwargs = settings
                .kwargs
                .iter()
                .map(|(k, v)| (k.clone(), toml_value(v)))
                .collect();
            return Some(Lm::custom(class.clone(), kwargs).adapter(adapter));
        }
        let model = settings.model.as_ref()?;
        let mut lm = Lm::for_model(model.clone());
        if let Some(variable) = &settings.api_key_env {
            lm = lm.api_key_env(variable.clone());
        }
        if let Some(url) = &settings.api_base {
            lm = lm.api_base(url.clone());
        }
        if let Some(t) = settings.temperature {
            lm = lm.temperature(t);
        }
        if let Some(n) = settings.max_tokens {
            lm = lm.max_tokens(n);
        }
        lm = lm.adapter(adapter);
        for (name, value) in &settings.kwargs {
            lm = lm.kwarg(name.clone(), toml_value(value));
        }
        Some(lm)
    }

    /// `builder` with these settings (what the builder sets afterwards wins).
    pub fn apply(&self, mut builder: DspexBuilder) -> DspexBuilder {
        if let Some(lm) = self.lm() {
            builder = builder.lm(lm);
        }
        if let Some(n) = self.workers {
            builder = builder.workers(n);
        }
        if let Some(python) = &self.python {
            builder = builder.python(python.clone());
        }
        for dir in &self.python_path {
            builder = builder.python_path(dir.clone());
        }
        for module in &self.imports {
            builder = builder.import(module.clone());
        }
        if let Some(address) = &self.ray_address {
            builder = builder.ray(address.as_str());
        }
        if let Some(seconds) = self.request_timeout {
            let timeout = Duration::from_secs_f64(seconds);
            builder = builder.bridge(|b| b.pool(|p| p.request_timeout(Some(timeout))));
        }
        let (requests, age, memory) = (
            self.worker_max_requests,
            self.worker_max_age.map(Duration::from_secs_f64),
            self.worker_max_memory_mb.map(|mib| mib << 20),
        );
        if requests.is_some() || age.is_some() || memory.is_some() {
            builder = builder.bridge(|b| {
                b.pool(|mut p| {
                    if requests.is_some() {
                        p = p.max_requests(requests);
                    }
                    if age.is_some() {
                        p = p.max_age(age);
                    }
                    if memory.is_some() {
                        p = p.max_memory(memory);
                    }
                    p
                })
            });
        }
        builder
    }
}

fn toml_value(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::from(s.as_str()),
        toml::Value::Integer(i) => Value::Int(*i),
        toml::Value::Float(f) => Value::Float(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::from(d.to_string()),
        toml::Value::Array(items) => Value::List(items.iter().map(toml_value).collect()),
        toml::Value::Table(table) => Value::Map(
            table
                .iter()
                .map(|(k, v)| (k.clone(), toml_value(v)))
                .collect(),
        ),
    }
}

impl Dspex {
    /// A builder with the configuration of this process (`dspex.toml`, `DSPEX_*`): set more on
    /// it, which wins. See [`config`](crate::config).
    pub fn configured() -> Result<DspexBuilder> {
        Ok(Config::load()?.apply(Dspex::builder()))
    }

    /// Starts a pool from the configuration of this process alone: a program picks its LM,
    /// worker count and Python up without code.
    ///
    /// ```no_run
    /// # async fn demo() -> dspex::Result<()> {
    /// // DSPEX_LM=openai/gpt-4o-mini OPENAI_API_KEY=... ./my-program
    /// let dspex = dspex::Dspex::from_env().await?;
    /// # Ok(()) }
    /// ```
    pub async fn from_env() -> Result<Dspex> {
        Dspex::configured()?.start().await
    }
}
