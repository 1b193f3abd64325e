//! The fork server and its supervisor; the Ray driver, supervised alike.
//!
//! One Python process (`python -m snakepit_bridge.forkserver`) imports DSPy and gRPC once and
//! forks a worker for each shim the pool starts (`python/snakepit_bridge/forkserver.py` and
//! `forkshim.py`). Its workers die with it (parent-death signal), so a fork server that dies takes
//! every worker along; the pool then replaces them, and their shims wait for the control socket to
//! accept again. This module restarts the fork server at once when it exits, with a short backoff
//! between failed starts; if it cannot be started again, workers are spawned plainly from then on
//! (with a warning) instead of the pool ending in `RestartLimitReached`.
//!
//! The Ray driver (`python -m snakepit_bridge.ray_driver`, see `ray.rs`) speaks the same protocol
//! to the same shims and has the same life: the pool's only process on the owner's side for all
//! its Ray-hosted workers, whose actors end with it. Unlike the fork server, when it cannot be
//! started again its shims give up (workers are not started locally instead).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use snakepit::BoxError;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

/// How often a fork server that exited is started again before workers fall back to plain
/// spawn.
const MAX_START_ATTEMPTS: u32 = 5;
/// The wait before the second start attempt; it doubles after each failed one.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);

/// The environment variable that tells a shim how long to wait for the control socket to accept
/// (while the fork server starts again), in seconds.
pub(crate) const SHIM_WAIT_ENV: &str = "SNAKEPIT_FORK_WAIT";

/// Which server a [`ForkServerSpec`] starts.
#[derive(Debug, Clone)]
pub(crate) enum ServerKind {
    /// `snakepit_bridge.forkserver`: forks local workers.
    Fork,
    /// `snakepit_bridge.ray_driver` with these arguments (after `--control`): workers on Ray.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    RayDriver(Vec<OsString>),
}

impl ServerKind {
    fn module(&self) -> &'static str {
        match self {
            ServerKind::Fork => "snakepit_bridge.forkserver",
            ServerKind::RayDriver(_) => "snakepit_bridge.ray_driver",
        }
    }

    fn ready_line(&self) -> &'static str {
        match self {
            ServerKind::Fork => "FORKSERVER_READY",
            ServerKind::RayDriver(_) => "RAY_DRIVER_READY",
        }
    }

    /// How logs and errors name it.
    fn name(&self) -> &'static str {
        match self {
            ServerKind::Fork => "the fork server",
            ServerKind::RayDriver(_) => "the Ray driver",
        }
    }
}

/// What a fork server (or the Ray driver) is started with.
#[derive(Debug, Clone)]
pub(crate) struct ForkServerSpec {
    pub(crate) kind: ServerKind,
    pub(crate) python: PathBuf,
    pub(crate) python_path: OsString,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) run_id: Option<String>,
    pub(crate) control: PathBuf,
    pub(crate) ready_within: Duration,
}

impl ForkServerSpec {
    /// The file whose existence tells waiting shims that the fork server is gone for good.
    pub(crate) fn gone_marker(&self) -> PathBuf {
        gone_marker(&self.control)
    }

    /// Starts a fork server and waits until it says it is ready.
    async fn start(&self) -> Result<tokio::process::Child, BoxError> {
        let mut command = tokio::process::Command::new(&self.python);
        command
            .args(["-m", self.kind.module(), "--control"])
            .arg(&self.control)
            .env("PYTHONPATH", &self.python_path)
            .env("PYTHONUNBUFFERED", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(self.run_id.iter().map(|id| (snakepit::RUN_ID_ENV, id)))
            .args(match &self.kind {
                ServerKind::RayDriver(args) => args.as_slice(),
                ServerKind::Fork => &[],
            })
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut process = command.spawn()?;
        let stdout = process.stdout.take().ok_or("no stdout")?;
        let stderr = process.stderr.take().ok_or("no stderr")?;
        let stream = match self.kind {
            ServerKind::Fork => "forkserver",
            ServerKind::RayDriver(_) => "ray_driver",
        };
        // Its last lines of standard error, for the error when it does not start.
        let last_words = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
        let kept = last_words.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "snakepit::worker_output", stream, "{line}");
                let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                if kept.len() == 20 {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        });
        let mut lines = BufReader::new(stdout).lines();
        let timeout = self.ready_within;
        let ready_line = self.kind.ready_line();
        let ready = tokio::time::timeout(timeout, async {
            while let Some(line) = lines.next_line().await? {
                if line.trim() == ready_line {
                    return Ok::<bool, std::io::Error>(true);
                }
                tracing::info!(target: "snakepit::worker_output", stream, "{line}");
            }
            Ok(false)
        })
        .await;
        let name = self.kind.name();
        let what = match ready {
            Ok(Ok(true)) => None,
            Ok(Ok(false)) => Some(format!("{name} exited before it was ready")),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => Some(format!("{name} was not ready within {timeout:?}")),
        };
        if let Some(what) = what {
            // Give its standard error a moment to arrive.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let said: Vec<String> = last_words
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect();
            return Err(if said.is_empty() {
                what.into()
            } else {
                format!("{what}; it said:\n{}", said.join("\n")).into()
            });
        }
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "snakepit::worker_output", stream, "{line}");
            }
        });
        Ok(process)
    }
}

pub(crate) fn gone_marker(control: &Path) -> PathBuf {
    control.with_extension("gone")
}

/// What the supervisor shares with the adapter.
#[derive(Debug, Default)]
struct ForkServerState {
    /// False once the fork server could not be started again: workers are spawned plainly.
    available: AtomicBool,
    pid: AtomicU32,
    restarts: AtomicU32,
}

/// A running fork server, restarted by a supervising task whenever it exits.
#[derive(Debug)]
pub(crate) struct ForkServer {
    spec: ForkServerSpec,
    state: Arc<ForkServerState>,
    stop: watch::Sender<bool>,
    supervisor: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ForkServer {
    /// Starts the fork server and its supervisor.
    pub(crate) async fn start(spec: ForkServerSpec) -> Result<Self, BoxError> {
        let _ = std::fs::remove_file(spec.gone_marker());
        let process = spec.start().await?;
        let state = Arc::new(ForkServerState::default());
        state.available.store(true, Ordering::Release);
        state
            .pid
            .store(process.id().unwrap_or(0), Ordering::Release);
        let (stop, stopped) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(spec.clone(), process, state.clone(), stopped));
        Ok(ForkServer {
            spec,
            state,
            stop,
            supervisor: std::sync::Mutex::new(Some(supervisor)),
        })
    }

    /// The control socket shims connect to.
    pub(crate) fn control(&self) -> &Path {
        &self.spec.control
    }

    /// Whether workers are forked (false after the fork server could not be restarted).
    pub(crate) fn available(&self) -> bool {
        self.state.available.load(Ordering::Acquire)
    }

    /// The current fork server's process id (0 while none runs).
    pub(crate) fn pid(&self) -> u32 {
        self.state.pid.load(Ordering::Acquire)
    }

    /// How often the fork server was started again after it exited.
    pub(crate) fn restarts(&self) -> u32 {
        self.state.restarts.load(Ordering::Acquire)
    }

    /// Stops the fork server (its remaining workers die with it) and its supervisor.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
        // The supervisor kills the process; if the runtime is gone, dropping it does (kill on drop).
        drop(
            self.supervisor
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
    }
}

impl Drop for ForkServer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Resolves once the fork server is to stop (or its owner is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

async fn supervise(
    spec: ForkServerSpec,
    mut process: tokio::process::Child,
    state: Arc<ForkServerState>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let status = tokio::select! {
            status = process.wait() => status,
            () = stopped(&mut stop) => {
                let _ = process.start_kill();
                let _ = process.wait().await;
                return;
            }
        };
        state.pid.store(0, Ordering::Release);
        let stopping = *stop.borrow();
        if stopping {
            return;
        }
        let name = spec.kind.name();
        tracing::warn!(
            status = ?status.ok(),
            "{name} exited (its workers died with it); starting it again"
        );
        let mut delay = FIRST_RETRY_DELAY;
        let mut attempt = 1;
        process = loop {
            let started = tokio::select! {
                started = spec.start() => started,
                () = stopped(&mut stop) => return,
            };
            match started {
                Ok(process) => break process,
                Err(e) if attempt < MAX_START_ATTEMPTS => {
                    tracing::warn!(attempt, error = %e, "{name} did not start; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stopped(&mut stop) => return,
                    }
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => {
                    tracing::error!(
                        attempts = attempt,
                        error = %e,
                        "{name} cannot be started again; {}",
                        match spec.kind {
                            ServerKind::Fork => "workers are spawned plainly from now on",
                            ServerKind::RayDriver(_) => "no worker can start on Ray from now on",
                        }
                    );
                    state.available.store(false, Ordering::Release);
                    // Shims still waiting for it give up at once.
                    let _ = std::fs::write(spec.gone_marker(), b"");
                    return;
                }
            }
        };
        state
            .pid
            .store(process.id().unwrap_or(0), Ordering::Release);
        state.restarts.fetch_add(1, Ordering::AcqRel);
        tracing::info!(pid = process.id(), "{name} is back");
    }
}
