//! `dspex doctor`: each part of an installation checked, each problem with its fix.

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use dspex::snakepit_grpc_bridge::environment::{
    EnvironmentOptions, PythonEnvironment, default_cache_dir, pinned_dspy_version,
};
use dspex::snakepit_grpc_bridge::snakepit::registry::default_runtime_dir;
use dspex::{Config, Dspex};

use crate::Failure;
use crate::status;

/// The checks' findings, printed as they come.
#[derive(Default)]
struct Report {
    problems: usize,
}

impl Report {
    fn ok(&mut self, what: &str, detail: impl AsRef<str>) {
        println!("ok       {what}: {}", detail.as_ref());
    }

    fn note(&mut self, what: &str, detail: impl AsRef<str>) {
        println!("note     {what}: {}", detail.as_ref());
    }

    fn problem(&mut self, what: &str, detail: impl AsRef<str>, fix: impl AsRef<str>) {
        self.problems += 1;
        println!("PROBLEM  {what}: {}", detail.as_ref());
        println!("         fix: {}", fix.as_ref());
    }
}

/// `python -c code`: its trimmed stdout, or its stderr's last line.
fn python(interpreter: &Path, code: &str) -> Result<String, String> {
    let output = Command::new(interpreter)
        .args(["-c", code])
        // As in the workers: LiteLLM's own copy of its cost map, not a fetch from GitHub.
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .output()
        .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(stderr.lines().last().unwrap_or("it failed").to_owned())
    }
}

/// Whether a file can be created in `dir` (made if missing).
fn writable(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    tempfile_in(dir).map_err(|e| e.to_string())
}

fn tempfile_in(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".dspex-doctor-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

pub(crate) async fn doctor(with_worker: bool) -> Result<ExitCode, Failure> {
    let mut report = Report::default();
    check_python(&mut report, with_worker).await;
    check_lm(&mut report);
    for (what, dir) in [
        ("cache directory", default_cache_dir()),
        (
            "runtime directory (sockets, registry)",
            default_runtime_dir(),
        ),
    ] {
        match writable(&dir) {
            Ok(()) => report.ok(what, format!("{} is writable", dir.display())),
            Err(error) => report.problem(
                what,
                format!("{} is not writable: {error}", dir.display()),
                "make it writable, or point DSPEX_CACHE_DIR (cache) or XDG_RUNTIME_DIR (runtime) elsewhere",
            ),
        }
    }
    let (live, stale) = status::runs();
    report.ok("live runs", live.len().to_string());
    if stale.is_empty() {
        report.ok("stale runs", "none");
    } else {
        report.note(
            "stale runs",
            format!(
                "{} whose owner died; the next pool that starts stops their workers",
                stale.len()
            ),
        );
    }
    if report.problems == 0 {
        println!("no problems found");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{} problem{} found",
            report.problems,
            if report.problems == 1 { "" } else { "s" }
        );
        Ok(ExitCode::FAILURE)
    }
}

/// The interpreter, the environment and its DSPy, the imports, and a real worker.
async fn check_python(report: &mut Report, with_worker: bool) {
    let resolved =
        tokio::task::spawn_blocking(|| PythonEnvironment::resolve(&EnvironmentOptions::default()))
            .await;
    let environment = match resolved {
        Ok(Ok(environment)) => environment,
        Ok(Err(error)) => {
            report.problem(
                "Python environment",
                dspex::error_chain(&error),
                "follow the message above; `dspex setup` builds the environment again",
            );
            return;
        }
        Err(error) => {
            report.problem("Python environment", error.to_string(), "run `dspex setup`");
            return;
        }
    };
    let interpreter = environment.python();
    // One interpreter start for the version checks and the imports (importing DSPy takes seconds).
    let checked = python(
        interpreter,
        "import sys, dspy, grpc, google.protobuf, numpy, litellm, optuna\n\
         print(sys.version.split()[0], dspy.__version__)",
    );
    match checked {
        Ok(versions) => {
            let (python_version, dspy) = versions.split_once(' ').unwrap_or((&versions, "?"));
            report.ok(
                "interpreter",
                format!("{} (Python {python_version})", interpreter.display()),
            );
            report.ok("imports", "dspy, grpc, protobuf, numpy, litellm, optuna");
            let pinned = pinned_dspy_version();
            let kind = if environment.is_managed() {
                "managed environment"
            } else {
                "DSPEX_PYTHON, used as it is"
            };
            if dspy == pinned {
                report.ok("environment", format!("{kind}, DSPy {dspy} (pinned)"));
            } else {
                report.problem(
                    "environment",
                    format!("{kind} has DSPy {dspy}; dspex pins {pinned}"),
                    format!("unset DSPEX_PYTHON to use the managed environment, or install dspy=={pinned} there"),
                );
            }
        }
        Err(error) => report.problem(
            "imports",
            format!("{} cannot import what the worker needs: {error}", interpreter.display()),
            "run `dspex setup` (or `dspex cache prune` and then `dspex setup`), or unset DSPEX_PYTHON",
        ),
    }
    if !with_worker {
        report.note("worker", "not started (--no-worker)");
        return;
    }
    let started = Instant::now();
    let pool = Dspex::builder().workers(1).start().await;
    match pool {
        Ok(dspex) => {
            match dspex.bridge().ping().await {
                Ok(identity) => report.ok(
                    "worker",
                    format!(
                        "started and answered a ping in {:.1} s (pid {}, Python {})",
                        started.elapsed().as_secs_f64(),
                        identity.pid,
                        identity.python_version
                    ),
                ),
                Err(error) => report.problem(
                    "worker",
                    format!(
                        "started but did not answer a ping: {}",
                        dspex::error_chain(&error)
                    ),
                    "see the worker's output above",
                ),
            }
            let _ = dspex.shutdown().await;
        }
        Err(error) => report.problem(
            "worker",
            format!("did not start: {}", dspex::error_chain(&error)),
            "see the message; `dspex setup` rebuilds the environment",
        ),
    }
}

/// The configured LM, and its key variable (whose value is never printed).
fn check_lm(report: &mut Report) {
    let config = match Config::load() {
        Ok(config) => config,
        Err(error) => {
            report.problem(
                "configuration",
                dspex::error_chain(&error),
                "correct the file or variable it names",
            );
            return;
        }
    };
    let Some(lm) = config.lm() else {
        report.note(
            "LM",
            "none configured (DSPEX_LM or [lm] model in dspex.toml); programs may set one in code",
        );
        return;
    };
    let name = lm.model().unwrap_or("a custom LM class").to_owned();
    match lm.key_variable() {
        None => report.ok("LM", format!("{name} (no key variable)")),
        Some(variable) => {
            let set = std::env::var_os(variable).is_some_and(|v| !v.is_empty());
            if set {
                report.ok("LM", format!("{name}; its key variable {variable} is set"));
            } else {
                report.problem(
                    "LM key",
                    format!("{variable} is not set, and the LM {name} needs it"),
                    format!("export {variable}=... where the program runs"),
                );
            }
        }
    }
}
