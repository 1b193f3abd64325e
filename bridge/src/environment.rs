//! The Python side, provisioned by the bridge itself: the interpreter (an explicit one, or a managed
//! virtual environment with the pinned requirements) and the worker package materialised from the
//! sources embedded in this crate, with protobuf stubs generated from the embedded `.proto`.
//!
//! Everything lands in a cache directory (`DSPEX_CACHE_DIR`, else `$XDG_CACHE_HOME/dspex`, else
//! `~/.cache/dspex`), in content-addressed folders guarded by file locks, so parallel processes
//! never race and a second run reuses what the first built.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::embedded::{PROTO, PYTHON_PACKAGE, REQUIREMENTS_LOCK};

/// The oldest Python the pinned requirements install on (`requirements.lock`: cachetools 8 and
/// numpy 2.4 need 3.11; DSPy itself would take 3.10).
pub const MIN_PYTHON: (u32, u32) = (3, 11);

/// The interpreters tried, in order, for the managed environment when `DSPEX_BOOTSTRAP_PYTHON`
/// does not name one: `python3`, then newer versions by name, newest first.
pub const BOOTSTRAP_CANDIDATES: &[&str] = &[
    "python3",
    "python3.14",
    "python3.13",
    "python3.12",
    "python3.11",
];

/// Why the Python environment is not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvironmentError {
    /// No Python interpreter could be run.
    #[error("cannot run Python interpreter `{}`: {source}; install Python {}.{} or newer, or point DSPEX_PYTHON at one", program.display(), MIN_PYTHON.0, MIN_PYTHON.1)]
    PythonNotFound {
        /// The interpreter that was tried.
        program: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The interpreter is older than [`MIN_PYTHON`].
    #[error("`{}` is Python {found}; the worker needs Python {}.{} or newer (set DSPEX_PYTHON or DSPEX_BOOTSTRAP_PYTHON to a newer one)", program.display(), MIN_PYTHON.0, MIN_PYTHON.1)]
    PythonTooOld {
        /// The interpreter.
        program: PathBuf,
        /// Its version.
        found: String,
    },
    /// No interpreter on `PATH` is recent enough.
    #[error("no Python {}.{} or newer found: tried {}; install one, or set DSPEX_BOOTSTRAP_PYTHON (or DSPEX_PYTHON) to one", MIN_PYTHON.0, MIN_PYTHON.1, tried.join(", "))]
    NoSuitablePython {
        /// Each interpreter tried, with its version or why it could not be run.
        tried: Vec<String>,
    },
    /// A provisioning step failed.
    #[error("{step} failed ({status}); its output ended with:\n{output_tail}\n{hint}")]
    StepFailed {
        /// What was being done.
        step: String,
        /// How the command ended.
        status: String,
        /// The last lines of its output.
        output_tail: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// A file or directory could not be used.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> EnvironmentError {
    let path = path.to_owned();
    move |source| EnvironmentError::Io {
        action,
        path,
        source,
    }
}

/// Where the Python environment comes from.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct EnvironmentOptions {
    /// Use this interpreter as it is (it must have the packages of `requirements.lock`).
    /// Default: `DSPEX_PYTHON` if set, else a managed virtual environment.
    pub python: Option<PathBuf>,
    /// The cache directory. Default: see the module documentation.
    pub cache_dir: Option<PathBuf>,
}

impl EnvironmentOptions {
    /// Uses this interpreter as it is.
    pub fn python(mut self, interpreter: impl Into<PathBuf>) -> Self {
        self.python = Some(interpreter.into());
        self
    }

    /// Caches the environment under `dir`.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }
}

/// A ready Python environment: the interpreter and the materialised worker package.
#[derive(Debug, Clone)]
pub struct PythonEnvironment {
    python: PathBuf,
    package_root: PathBuf,
    managed: bool,
}

impl PythonEnvironment {
    /// Finds or builds the environment. Blocking (the first run installs packages, about a
    /// minute, with progress on standard error): call it from `spawn_blocking` in async code.
    pub fn resolve(options: &EnvironmentOptions) -> Result<Self, EnvironmentError> {
        let cache = options.cache_dir.clone().unwrap_or_else(default_cache_dir);
        let explicit = options
            .python
            .clone()
            .or_else(|| std::env::var_os("DSPEX_PYTHON").map(PathBuf::from));
        let (python, managed) = match explicit {
            Some(python) => {
                check_version(&python)?;
                (python, false)
            }
            None => (managed_venv(&cache)?, true),
        };
        let package_root = materialise(&cache, &python)?;
        Ok(PythonEnvironment {
            python,
            package_root,
            managed,
        })
    }

    /// The interpreter workers run with.
    pub fn python(&self) -> &Path {
        &self.python
    }

    /// The folder holding `snakepit_bridge/`, `proto/` and the generated `stubs/`.
    pub fn package_root(&self) -> &Path {
        &self.package_root
    }

    /// Whether the interpreter belongs to a managed virtual environment.
    pub fn is_managed(&self) -> bool {
        self.managed
    }

    /// `PYTHONPATH` for a worker: the package, its stubs, then `extra`.
    pub fn python_path(&self, extra: &[PathBuf]) -> OsString {
        let mut paths = vec![self.package_root.clone(), self.package_root.join("stubs")];
        paths.extend(extra.iter().cloned());
        std::env::join_paths(paths).unwrap_or_default()
    }
}

/// `DSPEX_CACHE_DIR`, else `$XDG_CACHE_HOME/dspex`, else `~/.cache/dspex`, else a temp folder.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DSPEX_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("dspex");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache").join("dspex"),
        None => std::env::temp_dir().join("dspex-cache"),
    }
}

fn progress(message: &str) {
    // Straight to the stderr handle, not eprintln!, so the test harness does not swallow it.
    let _ = writeln!(io::stderr(), "[dspex] {message}");
}

fn hash_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn python_version(python: &Path) -> Result<(u32, u32, String), EnvironmentError> {
    let output = Command::new(python)
        .args(["-c", "import sys; print('%d %d %s' % (sys.version_info[0], sys.version_info[1], sys.version.split()[0]))"])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| EnvironmentError::PythonNotFound {
            program: python.to_owned(),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut parts = text.split_whitespace();
    match (
        parts.next().and_then(|p| p.parse().ok()),
        parts.next().and_then(|p| p.parse().ok()),
        parts.next(),
    ) {
        (Some(major), Some(minor), Some(full)) if output.status.success() => {
            Ok((major, minor, full.to_owned()))
        }
        _ => Err(EnvironmentError::PythonNotFound {
            program: python.to_owned(),
            source: io::Error::other(format!(
                "it did not report its version: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )),
        }),
    }
}

fn check_version(python: &Path) -> Result<String, EnvironmentError> {
    let (major, minor, full) = python_version(python)?;
    if (major, minor) < MIN_PYTHON {
        return Err(EnvironmentError::PythonTooOld {
            program: python.to_owned(),
            found: full,
        });
    }
    Ok(full)
}

/// The interpreter that builds the managed environment, and its version: `DSPEX_BOOTSTRAP_PYTHON`
/// if set (then it must do), else the first of [`BOOTSTRAP_CANDIDATES`] on `PATH` that is recent
/// enough.
fn bootstrap_python() -> Result<(PathBuf, String), EnvironmentError> {
    if let Some(named) = std::env::var_os("DSPEX_BOOTSTRAP_PYTHON") {
        let python = PathBuf::from(named);
        let version = check_version(&python)?;
        return Ok((python, version));
    }
    let mut tried = Vec::new();
    for name in BOOTSTRAP_CANDIDATES {
        match python_version(Path::new(name)) {
            Ok((major, minor, full)) if (major, minor) >= MIN_PYTHON => {
                return Ok((PathBuf::from(name), full));
            }
            Ok((_, _, full)) => tried.push(format!("{name} ({full})")),
            Err(_) => tried.push(format!("{name} (not found)")),
        }
    }
    Err(EnvironmentError::NoSuitablePython { tried })
}

/// Holds an exclusive lock on `path` (created if needed) until dropped.
fn lock_file(path: &Path) -> Result<File, EnvironmentError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_error("cannot create", parent))?;
    }
    let file = File::create(path).map_err(io_error("cannot create lock file", path))?;
    file.lock().map_err(io_error("cannot lock", path))?;
    Ok(file)
}

/// Runs `command`, echoing its output as progress, and fails with its output tail.
fn run_step(step: &str, mut command: Command, hint: &'static str) -> Result<(), EnvironmentError> {
    let program = format!("{:?}", command.get_program());
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| EnvironmentError::PythonNotFound {
            program: PathBuf::from(program),
            source,
        })?;
    let stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let mut tail = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map_while(Result::ok)
    {
        progress(&format!("  {line}"));
        tail.push(line);
    }
    let status = child.wait().map_err(|source| EnvironmentError::Io {
        action: "cannot wait for",
        path: PathBuf::from(step),
        source,
    })?;
    let stderr_lines = errors.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    tail.extend(stderr_lines);
    let start = tail.len().saturating_sub(30);
    Err(EnvironmentError::StepFailed {
        step: step.to_owned(),
        status: status.to_string(),
        output_tail: tail[start..].join("\n"),
        hint,
    })
}

/// The managed virtual environment for the pinned requirements, created on first use.
fn managed_venv(cache: &Path) -> Result<PathBuf, EnvironmentError> {
    let (bootstrap, version) = bootstrap_python()?;
    let key = hash_hex(&[
        REQUIREMENTS_LOCK.as_bytes(),
        version.as_bytes(),
        std::env::consts::ARCH.as_bytes(),
    ]);
    let venvs = cache.join("venvs");
    let venv = venvs.join(format!("py{version}-{key}"));
    let python = venv.join("bin").join("python");
    let ready = venv.join(".dspex-ready");
    if ready.exists() && damage(&venv).is_none() {
        return Ok(python);
    }
    let _lock = lock_file(&venvs.join(format!("py{version}-{key}.lock")))?;
    if ready.exists() {
        match damage(&venv) {
            // Another process finished it while we waited for the lock.
            None => return Ok(python),
            Some(missing) => progress(&format!(
                "the Python environment in {} is damaged ({missing} is missing); rebuilding it",
                venv.display()
            )),
        }
    }
    let started = Instant::now();
    progress(&format!(
        "creating the Python environment (first run only, about a minute) in {}",
        venv.display()
    ));
    if venv.exists() {
        progress("  removing an unfinished earlier attempt");
        fs::remove_dir_all(&venv).map_err(io_error("cannot remove", &venv))?;
    }
    let mut create = Command::new(&bootstrap);
    create.arg("-m").arg("venv").arg(&venv);
    run_step(
        "creating the virtual environment",
        create,
        "On Debian and Ubuntu, `apt-get install python3-venv` provides the venv module.",
    )?;
    let requirements = venv.join("requirements.lock");
    fs::write(&requirements, REQUIREMENTS_LOCK).map_err(io_error("cannot write", &requirements))?;
    let mut install = Command::new(&python);
    install
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
        ])
        .args(["--progress-bar", "off", "-r"])
        .arg(&requirements);
    run_step(
        "installing the pinned Python packages",
        install,
        "Check that the package index is reachable; the next start retries from scratch.",
    )?;
    let mut check = Command::new(&python);
    check.args(["-c", "import dspy, grpc, grpc_tools, numpy"]);
    run_step(
        "importing the installed packages",
        check,
        "The environment is incomplete; delete it and start again.",
    )?;
    fs::write(&ready, key).map_err(io_error("cannot write", &ready))?;
    progress(&format!(
        "Python environment ready in {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(python)
}

/// What a finished environment lacks, if anything: its interpreter or one of the packages the
/// workers import (file checks only; a start must stay fast).
fn damage(venv: &Path) -> Option<String> {
    let python = venv.join("bin").join("python");
    if !python.exists() {
        return Some(python.display().to_string());
    }
    let site = fs::read_dir(venv.join("lib"))
        .ok()?
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir());
    let Some(site) = site else {
        return Some("site-packages".to_owned());
    };
    [
        "dspy",
        "grpc",
        "grpc_tools",
        "google/protobuf",
        "numpy",
        "pydantic",
        "litellm",
    ]
    .iter()
    .map(|package| site.join(package).join("__init__.py"))
    .find(|init| !init.exists())
    .map(|init| init.display().to_string())
}

/// Writes the embedded worker package and proto into a content-addressed folder and generates the
/// protobuf stubs there with the environment's grpcio-tools.
fn materialise(cache: &Path, python: &Path) -> Result<PathBuf, EnvironmentError> {
    let mut parts: Vec<&[u8]> = vec![PROTO.as_bytes(), REQUIREMENTS_LOCK.as_bytes()];
    for (path, contents) in PYTHON_PACKAGE {
        parts.push(path.as_bytes());
        parts.push(contents);
    }
    let python_text = python.as_os_str().as_encoded_bytes();
    parts.push(python_text);
    let key = hash_hex(&parts);
    let packages = cache.join("bridge");
    let root = packages.join(&key);
    let ready = root.join(".ready");
    if ready.exists() {
        return Ok(root);
    }
    let _lock = lock_file(&packages.join(format!("{key}.lock")))?;
    if ready.exists() {
        return Ok(root);
    }
    let staging = packages.join(format!("{key}.tmp-{}", std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io_error("cannot remove", &staging))?;
    }
    for (relative, contents) in PYTHON_PACKAGE {
        let path = staging.join("snakepit_bridge").join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_error("cannot create", parent))?;
        }
        fs::write(&path, contents).map_err(io_error("cannot write", &path))?;
    }
    let proto_dir = staging.join("proto");
    fs::create_dir_all(&proto_dir).map_err(io_error("cannot create", &proto_dir))?;
    let proto = proto_dir.join("snakepit_bridge.proto");
    fs::write(&proto, PROTO).map_err(io_error("cannot write", &proto))?;
    let mut generate = Command::new(python);
    generate.current_dir(&staging).args([
        "-c",
        "from pathlib import Path\n\
         from snakepit_bridge.proto import generate_stubs\n\
         generate_stubs(Path('proto'), Path('stubs'))",
    ]);
    run_step(
        "generating the Python protobuf stubs",
        generate,
        "The interpreter needs grpcio-tools (it is in requirements.lock).",
    )?;
    let staged_ready = staging.join(".ready");
    fs::write(&staged_ready, &key).map_err(io_error("cannot write", &staged_ready))?;
    if root.exists() {
        fs::remove_dir_all(&root).map_err(io_error("cannot remove", &root))?;
    }
    fs::rename(&staging, &root).map_err(io_error("cannot move into place", &root))?;
    Ok(root)
}

/// The DSPy version the managed environment pins (`dspy==X` in `requirements.lock`).
///
/// ```
/// assert!(!snakepit_grpc_bridge::environment::pinned_dspy_version().is_empty());
/// ```
pub fn pinned_dspy_version() -> &'static str {
    REQUIREMENTS_LOCK
        .lines()
        .find_map(|line| line.trim().strip_prefix("dspy=="))
        .map(|rest| rest.split([' ', ';', '\\']).next().unwrap_or(rest))
        .unwrap_or("unknown")
}
