//! What installs the pinned packages into a managed environment: uv (fast: about 10 s cold on
//! this project's lock, against about 80 s for pip) or pip (`DSPEX_INSTALLER=pip`, and the
//! fallback when uv cannot be had).
//!
//! uv is used from `PATH` when there, else installed once from its own package (pinned:
//! [`UV_VERSION`]) into `tools/uv-VERSION` of the cache: with the interpreter's own pip when it
//! has one, else into a small environment of its own there.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::environment::{EnvironmentError, io_error, lock_file, progress, run_step};

/// The uv release installed when none is on `PATH`.
pub const UV_VERSION: &str = "0.13.9";

/// How packages get installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Installer {
    /// uv, at this path (or name on `PATH`).
    Uv(PathBuf),
    /// The environment's own pip.
    Pip,
}

impl Installer {
    /// The installer `DSPEX_INSTALLER` asks for (`uv`, the default, or `pip`); uv is found or
    /// bootstrapped with `python`, and pip stands in, with a warning, when that fails.
    pub(crate) fn choose(cache: &Path, python: &Path) -> Result<Installer, EnvironmentError> {
        match std::env::var("DSPEX_INSTALLER").as_deref() {
            Ok("pip") => return Ok(Installer::Pip),
            Ok("uv") | Err(_) => {}
            Ok(other) => {
                return Err(EnvironmentError::UnknownInstaller {
                    name: other.to_owned(),
                });
            }
        }
        if runs(Path::new("uv")) {
            return Ok(Installer::Uv(PathBuf::from("uv")));
        }
        match bootstrap_uv(cache, python) {
            Ok(uv) => Ok(Installer::Uv(uv)),
            Err(error) => {
                progress(&format!(
                    "cannot install uv ({error}); installing with pip instead (slower)"
                ));
                Ok(Installer::Pip)
            }
        }
    }

    /// Creates the virtual environment `venv` with `python` and installs the locks
    /// `requirements` in it (hash-checked: the locks carry hashes).
    pub(crate) fn create(
        &self,
        cache: &Path,
        python: &Path,
        venv: &Path,
        requirements: &[PathBuf],
    ) -> Result<(), EnvironmentError> {
        let venv_python = venv.join("bin").join("python");
        match self {
            Installer::Uv(uv) => {
                let mut create = uv_command(uv, cache);
                create
                    .args(["venv", "--quiet", "--python-preference", "only-system"])
                    .arg("--python")
                    .arg(python)
                    .arg(venv);
                run_step("creating the virtual environment (uv)", create, UV_HINT)?;
                let mut sync = uv_command(uv, cache);
                // Bytecode compiled now, as pip does: without it every worker compiles what it
                // imports (LiteLLM alone takes 15 s) when the bytecode cache is off or not writable.
                sync.args(["pip", "sync", "--color", "never", "--require-hashes"])
                    .arg("--compile-bytecode")
                    .arg("--python")
                    .arg(&venv_python)
                    .args(requirements);
                run_step(
                    "installing the pinned Python packages (uv)",
                    sync,
                    INDEX_HINT,
                )
            }
            Installer::Pip => {
                let mut create = Command::new(python);
                create.arg("-m").arg("venv").arg(venv);
                run_step(
                    "creating the virtual environment",
                    create,
                    "On Debian and Ubuntu, `apt-get install python3-venv` provides the venv module.",
                )?;
                let mut install = Command::new(&venv_python);
                install
                    .args(["-m", "pip", "install", "--disable-pip-version-check"])
                    .args(["--no-input", "--progress-bar", "off", "--require-hashes"]);
                for lock in requirements {
                    install.arg("-r").arg(lock);
                }
                run_step(
                    "installing the pinned Python packages (pip)",
                    install,
                    INDEX_HINT,
                )
            }
        }
    }
}

const INDEX_HINT: &str =
    "Check that the package index is reachable; the next start retries from scratch.";
const UV_HINT: &str = "Set DSPEX_INSTALLER=pip to install with pip instead.";

/// uv with the cache inside ours (unless `UV_CACHE_DIR` says otherwise), and never a Python of
/// its own.
fn uv_command(uv: &Path, cache: &Path) -> Command {
    let mut command = Command::new(uv);
    if std::env::var_os("UV_CACHE_DIR").is_none() {
        command.env("UV_CACHE_DIR", cache.join("uv-cache"));
    }
    command.env("UV_PYTHON_DOWNLOADS", "never");
    command
}

/// Whether `program --version` runs.
fn runs(program: &Path) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// uv in `tools/uv-VERSION` of the cache, installed there from its package on first use.
fn bootstrap_uv(cache: &Path, python: &Path) -> Result<PathBuf, EnvironmentError> {
    let tools = cache.join("tools");
    let home = tools.join(format!("uv-{UV_VERSION}"));
    let uv = home.join("bin").join("uv");
    if runs(&uv) {
        return Ok(uv);
    }
    let _lock = lock_file(&tools.join(format!("uv-{UV_VERSION}.lock")))?;
    if runs(&uv) {
        return Ok(uv);
    }
    progress(&format!(
        "installing uv {UV_VERSION} (once) in {}",
        home.display()
    ));
    if home.exists() {
        std::fs::remove_dir_all(&home).map_err(io_error("cannot remove", &home))?;
    }
    // The interpreter's own pip, straight into the folder (no environment to create), when it
    // has one; else a small environment of uv's own.
    let mut direct = Command::new(python);
    direct
        .args(["-m", "pip", "install", "--disable-pip-version-check"])
        .args(["--no-input", "--progress-bar", "off", "--target"])
        .arg(&home)
        .arg(format!("uv=={UV_VERSION}"));
    if run_step("installing uv", direct, UV_HINT).is_err() || !runs(&uv) {
        if home.exists() {
            std::fs::remove_dir_all(&home).map_err(io_error("cannot remove", &home))?;
        }
        let mut create = Command::new(python);
        create.arg("-m").arg("venv").arg(&home);
        run_step("creating uv's environment", create, UV_HINT)?;
        let mut install = Command::new(home.join("bin").join("python"));
        install
            .args(["-m", "pip", "install", "--disable-pip-version-check"])
            .args(["--no-input", "--progress-bar", "off"])
            .arg(format!("uv=={UV_VERSION}"));
        run_step("installing uv", install, UV_HINT)?;
    }
    if runs(&uv) {
        Ok(uv)
    } else {
        Err(EnvironmentError::StepFailed {
            step: "running uv".into(),
            status: "it does not run".into(),
            output_tail: uv.display().to_string(),
            hint: UV_HINT,
        })
    }
}
