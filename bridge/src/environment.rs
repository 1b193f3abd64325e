//! The Python side, provisioned by the bridge itself: the interpreter (an explicit one, or a managed
//! virtual environment with the pinned requirements) and the worker package materialised from the
//! sources embedded in this crate, with protobuf stubs generated from the embedded `.proto`.
//!
//! Everything lands in a cache directory (`DSPEX_CACHE_DIR`, else `$XDG_CACHE_HOME/dspex`, else
//! `~/.cache/dspex`), in content-addressed folders guarded by file locks, so parallel processes
//! never race and a second run reuses what the first built.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::embedded::{
    PROTO, PYTHON_PACKAGE, REQUIREMENTS_LOCK, REQUIREMENTS_RAY_LOCK, REQUIREMENTS_TEST_LOCK,
};
use crate::installer::Installer;
pub use crate::installer::UV_VERSION;
use crate::provisioning::{ProvisionProgress, ProvisionReporter};

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
    #[error("cannot run Python interpreter `{}` (install Python {}.{} or newer, or point DSPEX_PYTHON at one)", program.display(), MIN_PYTHON.0, MIN_PYTHON.1)]
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
    /// `DSPEX_INSTALLER` names no installer.
    #[error("DSPEX_INSTALLER={name:?} is not an installer: use `uv` (the default) or `pip`")]
    UnknownInstaller {
        /// What it said.
        name: String,
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
    #[error("{action} {}", path.display())]
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

pub(crate) fn io_error(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> EnvironmentError {
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
    /// Also install the worker's test packages (`requirements-test.lock`: pytest, hypothesis),
    /// in an environment of their own. Default: false (users get only the runtime lock).
    pub test_requirements: bool,
    /// Also install Ray (`requirements-ray.lock`), for workers placed on a Ray cluster, in an
    /// environment of its own. Default: false.
    pub ray: bool,
    /// The cache directory. Default: see the module documentation.
    pub cache_dir: Option<PathBuf>,
    /// Receives the progress of building the environment. Default: lines on standard error.
    pub progress: Option<ProvisionReporter>,
}

impl EnvironmentOptions {
    /// Uses this interpreter as it is.
    pub fn python(mut self, interpreter: impl Into<PathBuf>) -> Self {
        self.python = Some(interpreter.into());
        self
    }

    /// Also installs the worker's test packages (see
    /// [`test_requirements`](Self::test_requirements)).
    pub fn with_test_requirements(mut self) -> Self {
        self.test_requirements = true;
        self
    }

    /// Also installs Ray (see [`ray`](Self::ray)).
    pub fn with_ray(mut self) -> Self {
        self.ray = true;
        self
    }

    /// Where the managed environments live. Default: `DSPEX_CACHE_DIR`, else the user's cache.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Sends the progress of building the environment to `report` instead of standard error.
    pub fn on_progress(
        mut self,
        report: impl Fn(&ProvisionProgress) + Send + Sync + 'static,
    ) -> Self {
        self.progress = Some(ProvisionReporter::new(report));
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
        crate::provisioning::with_reporter(options.progress.clone(), || Self::resolve_here(options))
    }

    /// The environment if it is there and complete, without provisioning anything: `None` when
    /// [`resolve`](Self::resolve) would have to build it (e.g. the Ray extra was never used on
    /// this machine). An explicit interpreter is always there.
    ///
    /// ```no_run
    /// use snakepit_grpc_bridge::environment::{EnvironmentOptions, PythonEnvironment};
    /// match PythonEnvironment::existing(&EnvironmentOptions::default().with_ray())? {
    ///     Some(environment) => println!("Ray is provisioned: {}", environment.python().display()),
    ///     None => println!("Ray is not provisioned"),
    /// }
    /// # Ok::<(), snakepit_grpc_bridge::environment::EnvironmentError>(())
    /// ```
    pub fn existing(options: &EnvironmentOptions) -> Result<Option<Self>, EnvironmentError> {
        if options.python.is_none() && std::env::var_os("DSPEX_PYTHON").is_none() {
            let cache = options.cache_dir.clone().unwrap_or_else(default_cache_dir);
            let (_, _, venv) = managed_venv_path(&cache, &Extras::of(options))?;
            if !venv.join(".dspex-ready").exists() || damage(&venv).is_some() {
                return Ok(None);
            }
        }
        Self::resolve(options).map(Some)
    }

    fn resolve_here(options: &EnvironmentOptions) -> Result<Self, EnvironmentError> {
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
            None => (managed_venv(&cache, &Extras::of(options))?, true),
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

pub(crate) fn progress(message: &str) {
    crate::provisioning::report(message);
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
pub(crate) fn lock_file(path: &Path) -> Result<File, EnvironmentError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_error("cannot create", parent))?;
    }
    let file = File::create(path).map_err(io_error("cannot create lock file", path))?;
    file.lock().map_err(io_error("cannot lock", path))?;
    Ok(file)
}

/// Runs `command`, echoing its output as progress, and fails with its output tail.
pub(crate) fn run_step(
    step: &str,
    mut command: Command,
    hint: &'static str,
) -> Result<(), EnvironmentError> {
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
    // Both streams are progress (uv reports on stderr); stderr is also the failure's tail.
    let reporter = crate::provisioning::current();
    let errors = std::thread::spawn(move || {
        crate::provisioning::with_reporter(reporter, || {
            BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .inspect(|line| progress(&format!("  {line}")))
                .collect::<Vec<_>>()
        })
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

/// The optional locks an environment holds beside `requirements.lock`; each gives the
/// environment's name a suffix (`-test`, `-ray`), so each combination is an environment of its own.
struct Extras {
    test: bool,
    ray: bool,
}

/// Each optional lock: its file, its text, and the suffix of the environments that hold it.
const OPTIONAL_LOCKS: [(&str, &str, &str); 2] = [
    ("requirements-test.lock", REQUIREMENTS_TEST_LOCK, "-test"),
    ("requirements-ray.lock", REQUIREMENTS_RAY_LOCK, "-ray"),
];

impl Extras {
    fn of(options: &EnvironmentOptions) -> Self {
        Extras {
            test: options.test_requirements,
            ray: options.ray,
        }
    }

    /// The locks to install, and the environment name's suffix.
    fn locks(&self) -> (Vec<(&'static str, &'static str)>, String) {
        let mut locks = vec![("requirements.lock", REQUIREMENTS_LOCK)];
        let mut suffix = String::new();
        for ((name, text, tag), wanted) in OPTIONAL_LOCKS.into_iter().zip([self.test, self.ray]) {
            if wanted {
                locks.push((name, text));
                suffix.push_str(tag);
            }
        }
        (locks, suffix)
    }
}

/// The managed virtual environment for the pinned requirements, created on first use.
/// The bootstrap interpreter and its version, the key of the locks, and the managed
/// environment's folder for `extras`.
fn managed_venv_path(
    cache: &Path,
    extras: &Extras,
) -> Result<((PathBuf, String), String, PathBuf), EnvironmentError> {
    let (bootstrap, version) = bootstrap_python()?;
    let (locks, suffix) = extras.locks();
    let mut parts: Vec<&[u8]> = locks.iter().map(|(_, text)| text.as_bytes()).collect();
    parts.extend([version.as_bytes(), std::env::consts::ARCH.as_bytes()]);
    let key = hash_hex(&parts);
    let venv = cache
        .join("venvs")
        .join(format!("py{version}-{key}{suffix}"));
    Ok(((bootstrap, version), key, venv))
}

fn managed_venv(cache: &Path, extras: &Extras) -> Result<PathBuf, EnvironmentError> {
    let ((bootstrap, _version), key, venv) = managed_venv_path(cache, extras)?;
    let (locks, _) = extras.locks();
    let locks = &locks[..];
    let venvs = cache.join("venvs");
    let name = venv
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let python = venv.join("bin").join("python");
    let ready = venv.join(".dspex-ready");
    if ready.exists() && damage(&venv).is_none() {
        return Ok(python);
    }
    let _lock = lock_file(&venvs.join(format!("{name}.lock")))?;
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
        "creating the Python environment (first run only: seconds with uv, a minute with pip) in {}",
        venv.display()
    ));
    if venv.exists() {
        progress("  removing an unfinished earlier attempt");
        fs::remove_dir_all(&venv).map_err(io_error("cannot remove", &venv))?;
    }
    // The locks sit beside the environment while it is built, and inside it once it is.
    let mut requirements = Vec::new();
    for (name, text) in locks {
        let path = venvs.join(format!(
            "{}.{name}",
            venv.file_name().unwrap_or_default().to_string_lossy()
        ));
        fs::write(&path, text).map_err(io_error("cannot write", &path))?;
        requirements.push(path);
    }
    let installer = Installer::choose(cache, &bootstrap)?;
    installer.create(cache, &bootstrap, &venv, &requirements)?;
    for ((name, _), path) in locks.iter().zip(&requirements) {
        let kept = venv.join(name);
        fs::rename(path, &kept).map_err(io_error("cannot move", path))?;
    }
    let mut check = Command::new(&python);
    let imports = if extras.ray {
        "import dspy, grpc, grpc_tools, numpy, ray"
    } else {
        "import dspy, grpc, grpc_tools, numpy"
    };
    check.args(["-c", imports]);
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

/// Removes the managed environments that the current locks no longer name (built by an earlier
/// version of the locks: each holds a copy of the locks it was built from), and unfinished ones
/// nobody is building. An environment being built (its build lock held) is left alone. Returns
/// what was removed. `cache` defaults as for [`EnvironmentOptions::cache_dir`].
///
/// Workers started from a removed environment keep running; the next start builds what it needs.
pub fn prune_stale_environments(cache: Option<&Path>) -> Result<Vec<PathBuf>, EnvironmentError> {
    let cache = cache.map_or_else(default_cache_dir, Path::to_owned);
    let venvs = cache.join("venvs");
    let Ok(entries) = fs::read_dir(&venvs) else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let venv = entry.path();
        if !venv.is_dir() {
            continue;
        }
        let current = |name: &str, text: &str| {
            fs::read_to_string(venv.join(name)).is_ok_and(|kept| kept == text)
        };
        let name = venv.to_string_lossy().into_owned();
        // The suffixes come in OPTIONAL_LOCKS' order: strip them from the end, last first.
        let mut rest = name.as_str();
        let mut optional_current = true;
        for (lock, text, tag) in OPTIONAL_LOCKS.into_iter().rev() {
            if let Some(stripped) = rest.strip_suffix(tag) {
                rest = stripped;
                optional_current &= current(lock, text);
            }
        }
        let up_to_date = venv.join(".dspex-ready").exists()
            && current("requirements.lock", REQUIREMENTS_LOCK)
            && optional_current;
        if up_to_date {
            continue;
        }
        // Skip one that a process is building now.
        let build_lock = venvs.join(format!("{}.lock", entry.file_name().to_string_lossy()));
        if let Ok(file) = File::options().write(true).open(&build_lock)
            && file.try_lock().is_err()
        {
            continue;
        }
        fs::remove_dir_all(&venv).map_err(io_error("cannot remove", &venv))?;
        let _ = fs::remove_file(&build_lock);
        removed.push(venv);
    }
    Ok(removed)
}

#[cfg(test)]
mod prune_tests {
    use super::*;

    fn venv(cache: &Path, name: &str, ready: bool, lock: &str) -> PathBuf {
        let dir = cache.join("venvs").join(name);
        fs::create_dir_all(dir.join("bin")).unwrap();
        fs::write(dir.join("requirements.lock"), lock).unwrap();
        if ready {
            fs::write(dir.join(".dspex-ready"), "x").unwrap();
        }
        dir
    }

    #[test]
    fn only_environments_of_earlier_locks_and_abandoned_ones_are_pruned() {
        let cache = tempfile::tempdir().unwrap();
        let current = venv(cache.path(), "py3.11.7-current", true, REQUIREMENTS_LOCK);
        let old = venv(cache.path(), "py3.11.7-old", true, "dspy==2.0\n");
        let abandoned = venv(cache.path(), "py3.11.7-abandoned", false, REQUIREMENTS_LOCK);
        let building = venv(cache.path(), "py3.11.7-building", false, "");
        let held = lock_file(&cache.path().join("venvs/py3.11.7-building.lock")).unwrap();
        let stale_test = venv(cache.path(), "py3.11.7-t-test", true, REQUIREMENTS_LOCK);
        fs::write(stale_test.join("requirements-test.lock"), "pytest==1\n").unwrap();
        let ray = venv(cache.path(), "py3.11.7-r-ray", true, REQUIREMENTS_LOCK);
        fs::write(ray.join("requirements-ray.lock"), REQUIREMENTS_RAY_LOCK).unwrap();
        let test_ray = venv(
            cache.path(),
            "py3.11.7-tr-test-ray",
            true,
            REQUIREMENTS_LOCK,
        );
        fs::write(
            test_ray.join("requirements-test.lock"),
            REQUIREMENTS_TEST_LOCK,
        )
        .unwrap();
        fs::write(
            test_ray.join("requirements-ray.lock"),
            REQUIREMENTS_RAY_LOCK,
        )
        .unwrap();
        let stale_ray = venv(
            cache.path(),
            "py3.11.7-sr-test-ray",
            true,
            REQUIREMENTS_LOCK,
        );
        fs::write(
            stale_ray.join("requirements-test.lock"),
            REQUIREMENTS_TEST_LOCK,
        )
        .unwrap();
        fs::write(stale_ray.join("requirements-ray.lock"), "ray==1\n").unwrap();

        let mut removed = prune_stale_environments(Some(cache.path())).unwrap();
        removed.sort();
        assert!(
            ray.exists() && test_ray.exists(),
            "current Ray environments stay"
        );
        let mut expected = vec![
            abandoned.clone(),
            old.clone(),
            stale_test.clone(),
            stale_ray.clone(),
        ];
        expected.sort();
        assert_eq!(removed, expected);
        assert!(current.exists() && building.exists());
        assert!(!old.exists() && !abandoned.exists() && !stale_test.exists());
        drop(held);
        // Once nobody builds it, it goes too; the current one never does.
        assert_eq!(
            prune_stale_environments(Some(cache.path())).unwrap(),
            vec![building]
        );
        assert!(current.exists());
    }
}

#[cfg(test)]
mod progress_tests {
    use super::*;
    use crate::provisioning::with_reporter;
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_steps_output_on_both_streams_reaches_the_reporter() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = seen.clone();
        let reporter = ProvisionReporter::new(move |p| {
            kept.lock().unwrap().push((p.message.clone(), p.detail));
        });
        let mut command = Command::new("sh");
        command.args(["-c", "echo to-stdout; echo to-stderr >&2"]);
        with_reporter(Some(reporter), || {
            progress("installing");
            run_step("a step", command, "no hint").unwrap();
        });
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("installing".to_owned(), false),
                ("to-stderr".to_owned(), true),
                ("to-stdout".to_owned(), true),
            ]
        );
    }
}
