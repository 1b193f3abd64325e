//! One worker's life: spawn, connect, serve under health checks, and stop or die.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::adapter::{Adapter, StartedWorker, WorkerContext};
use crate::dispatch::lock;
use crate::error::{StartFailure, WorkerExit, WorkerId};
use crate::pool::Shared;
use crate::process;
use crate::recycle::RecycleReason;

/// How one worker process ended.
pub(crate) enum GenerationEnd {
    /// The pool is shutting down; the worker was stopped.
    Shutdown,
    /// The worker failed; `uptime` is how long it had been ready (`None`: never).
    Failed {
        exit: WorkerExit,
        uptime: Option<Duration>,
    },
    /// The healthy worker was retired past a recycling limit and stopped.
    Recycled(RecycleReason),
}

/// Runs one worker process from spawn to exit.
pub(crate) async fn run_generation<A: Adapter>(
    shared: &Shared<A>,
    id: WorkerId,
    shutdown: &mut watch::Receiver<bool>,
) -> GenerationEnd {
    let span = tracing::info_span!("worker", slot = id.slot, generation = id.generation, run_id = %shared.run_id);
    run(shared, id, shutdown).instrument(span).await
}

async fn run<A: Adapter>(
    shared: &Shared<A>,
    id: WorkerId,
    shutdown: &mut watch::Receiver<bool>,
) -> GenerationEnd {
    let config = &shared.config;
    let ctx = WorkerContext {
        id,
        run_id: shared.run_id.clone(),
    };
    let start_failed = |reason: StartFailure, stderr_tail: String| GenerationEnd::Failed {
        exit: WorkerExit::StartFailed {
            reason,
            stderr_tail,
        },
        uptime: None,
    };
    let command = match shared.adapter.command(&ctx) {
        Ok(command) => command,
        Err(e) => return start_failed(StartFailure::Command(Arc::new(e)), String::new()),
    };
    let spawned_at = Instant::now();
    let mut child = match process::spawn(&command, &ctx, config.parent_death_signal).await {
        Ok(child) => child,
        Err(e) => {
            let program = command.program().to_string_lossy().into_owned();
            let source = Arc::new(e);
            return start_failed(StartFailure::Spawn { program, source }, String::new());
        }
    };
    let Some(pid) = child.id() else {
        return start_failed(
            StartFailure::Connect(Arc::new("the process vanished right after spawn".into())),
            String::new(),
        );
    };
    shared.registry.add_worker(id.slot, pid);
    let stdout_for_adapter = if command.stdout {
        child.stdout.take()
    } else {
        None
    };
    let output = OutputCapture::start(&mut child, id, config.stderr_tail_lines);
    let mut process = StartedWorker {
        pid,
        stdin: child.stdin.take(),
        stdout: stdout_for_adapter,
    };
    tracing::debug!(pid, "worker spawned");

    let connect = tokio::time::timeout(
        config.startup_timeout,
        shared.adapter.connect(&ctx, &mut process),
    );
    let connected = tokio::select! {
        result = connect => match result {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(e)) => Err(StartFailure::Connect(Arc::new(e))),
            Err(_) => Err(StartFailure::Timeout(config.startup_timeout)),
        },
        status = child.wait() => Err(match status {
            Ok(status) => StartFailure::Exited(status),
            Err(e) => StartFailure::Connect(Arc::new(Box::new(e))),
        }),
        _ = signalled(shutdown) => {
            kill_and_reap(&mut child, pid).await;
            shared.registry.remove_worker(id.slot);
            return GenerationEnd::Shutdown;
        }
    };
    drop(process);
    let connection = match connected {
        Ok(connection) => Arc::new(connection),
        Err(mut reason) => {
            // A connect error is often only the symptom (a closed pipe or socket) of the process
            // exiting; when it did, its exit status is the better reason.
            if let StartFailure::Connect(_) = reason
                && let Ok(Ok(status)) =
                    tokio::time::timeout(Duration::from_millis(200), child.wait()).await
            {
                reason = StartFailure::Exited(status);
            }
            kill_and_reap(&mut child, pid).await;
            shared.registry.remove_worker(id.slot);
            let stderr_tail = output.finish(Duration::from_millis(500)).await;
            tracing::warn!(pid, %reason, "worker failed to start");
            return start_failed(reason, stderr_tail);
        }
    };
    lock(&shared.dispatcher).worker_ready(id, connection.clone());
    let ready_at = Instant::now();
    tracing::info!(
        pid,
        startup_ms = spawned_at.elapsed().as_secs_f64() * 1e3,
        "worker ready"
    );

    let mut health = config.health_check_interval.map(every);
    let mut drained = lock(&shared.dispatcher).drained_signal(id);
    let mut retire_at = config
        .max_age
        .map(|age| (tokio::time::Instant::now() + age, age));
    let mut memory = config
        .max_memory
        .map(|limit| (every(config.memory_check_interval), limit));
    let exit = loop {
        tokio::select! {
            status = child.wait() => break exit_of(status),
            _ = until(retire_at.map(|(at, _)| at)) => {
                if let Some((_, age)) = retire_at.take() {
                    lock(&shared.dispatcher).retire(id, RecycleReason::MaxAge(age));
                }
            }
            _ = tick(memory.as_mut().map(|(interval, _)| interval)) => {
                let rss = match memory {
                    Some(_) => shared.adapter.resident_bytes(&connection, pid).await,
                    None => None,
                };
                if let Some((_, limit)) = memory
                    && let Some(rss_bytes) = rss
                    && rss_bytes > limit
                {
                    memory = None;
                    lock(&shared.dispatcher).retire(id, RecycleReason::MaxMemory { rss_bytes, limit });
                }
            }
            reason = drained_reason(&mut drained) => {
                stop_gracefully(shared, &connection, &mut child, pid).await;
                shared.registry.remove_worker(id.slot);
                tracing::info!(pid, %reason, uptime_ms = ready_at.elapsed().as_millis() as u64, "worker recycled");
                return GenerationEnd::Recycled(reason);
            }
            _ = tick(health.as_mut()) => {
                let check = tokio::time::timeout(
                    config.health_check_timeout,
                    shared.adapter.health_check(&connection),
                );
                let reason = tokio::select! {
                    status = child.wait() => break exit_of(status),
                    result = check => match result {
                        Ok(Ok(())) => continue,
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => format!("no answer within {:?}", config.health_check_timeout),
                    },
                };
                tracing::warn!(pid, %reason, "worker failed its health check; killing it");
                kill_and_reap(&mut child, pid).await;
                break WorkerExit::HealthCheckFailed { reason };
            }
            _ = signalled(shutdown) => {
                stop_gracefully(shared, &connection, &mut child, pid).await;
                shared.registry.remove_worker(id.slot);
                return GenerationEnd::Shutdown;
            }
        }
    };
    // Whatever the worker started in its group goes with it. The leader is reaped by now, so
    // make sure the group is still ours before signalling it.
    process::signal_group_of_run(pid, &shared.run_id, libc::SIGKILL);
    shared.registry.remove_worker(id.slot);
    let uptime = ready_at.elapsed();
    // The log waits (up to 100 ms) for the last lines the worker wrote; the restart does not.
    let reported = exit.to_string();
    tokio::spawn(
        async move {
            let stderr_tail = output.finish(Duration::from_millis(100)).await;
            tracing::warn!(pid, exit = %reported, uptime_ms = uptime.as_millis() as u64, stderr_tail, "worker stopped");
        }
        .instrument(tracing::Span::current()),
    );
    GenerationEnd::Failed {
        exit,
        uptime: Some(uptime),
    }
}

fn exit_of(status: std::io::Result<std::process::ExitStatus>) -> WorkerExit {
    match status {
        Ok(status) => WorkerExit::Exited(status),
        Err(e) => WorkerExit::HealthCheckFailed {
            reason: format!("waiting for the process failed: {e}"),
        },
    }
}

/// Resolves when the pool starts shutting down (or is gone).
pub(crate) async fn signalled(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|&stop| stop).await;
}

/// Resolves with the reason once the retiring worker has nothing left to serve.
async fn drained_reason(drained: &mut watch::Receiver<Option<RecycleReason>>) -> RecycleReason {
    let reason = match drained.wait_for(Option::is_some).await {
        Ok(reason) => *reason,
        Err(_) => None,
    };
    match reason {
        Some(reason) => reason,
        None => std::future::pending().await,
    }
}

/// An interval whose first tick is one `period` from now.
fn every(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

/// Resolves at `deadline`, never without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: Option<&mut tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// `SIGKILL` to the whole process group, then reap the leader.
async fn kill_and_reap(child: &mut Child, pid: u32) {
    process::signal_group(pid, libc::SIGKILL);
    let _ = child.wait().await;
}

/// The adapter's polite stop, then `SIGTERM`, then after the grace period `SIGKILL`.
async fn stop_gracefully<A: Adapter>(
    shared: &Shared<A>,
    connection: &A::Connection,
    child: &mut Child,
    pid: u32,
) {
    let deadline = tokio::time::Instant::now() + shared.config.grace_period;
    if let Ok(Err(e)) = tokio::time::timeout_at(deadline, shared.adapter.stop(connection)).await {
        tracing::debug!(pid, error = %e, "the adapter's stop failed");
    }
    let settle = deadline.min(tokio::time::Instant::now() + Duration::from_millis(50));
    if tokio::time::timeout_at(settle, child.wait()).await.is_err() {
        process::signal_group(pid, libc::SIGTERM);
        if tokio::time::timeout_at(deadline, child.wait())
            .await
            .is_err()
        {
            tracing::warn!(pid, grace = ?shared.config.grace_period, "worker ignored SIGTERM; killing it");
            kill_and_reap(child, pid).await;
        }
    }
    process::signal_group_of_run(pid, &shared.run_id, libc::SIGKILL);
    tracing::debug!(pid, "worker stopped");
}

/// Forwards a worker's standard error (and standard output, unless the adapter took it) to
/// `tracing`, keeping the last lines of standard error for error messages.
struct OutputCapture {
    tail: Arc<Mutex<VecDeque<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl OutputCapture {
    fn start(child: &mut Child, id: WorkerId, keep: usize) -> Self {
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(keep)));
        let mut readers = Vec::new();
        if let Some(stderr) = child.stderr.take() {
            readers.push(tokio::spawn(forward(
                stderr,
                id,
                "stderr",
                Some((tail.clone(), keep)),
            )));
        }
        if let Some(stdout) = child.stdout.take() {
            readers.push(tokio::spawn(forward(stdout, id, "stdout", None)));
        }
        OutputCapture { tail, readers }
    }

    /// Waits up to `wait` for the output to end, then returns the kept lines.
    async fn finish(self, wait: Duration) -> String {
        let readers = futures_join(self.readers);
        let _ = tokio::time::timeout(wait, readers).await;
        let tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

async fn futures_join(handles: Vec<JoinHandle<()>>) {
    for handle in handles {
        let _ = handle.await;
    }
}

const MAX_KEPT_LINE: usize = 2000;

async fn forward(
    stream: impl AsyncRead + Unpin,
    id: WorkerId,
    name: &'static str,
    tail: Option<(Arc<Mutex<VecDeque<String>>>, usize)>,
) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        tracing::info!(target: "snakepit::worker_output", slot = id.slot, generation = id.generation, stream = name, "{text}");
        if let Some((tail, keep)) = &tail {
            let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
            if tail.len() >= *keep {
                tail.pop_front();
            }
            if *keep > 0 {
                let mut kept: String = text.chars().take(MAX_KEPT_LINE).collect();
                if kept.len() < text.len() {
                    kept.push('…');
                }
                tail.push_back(kept);
            }
        }
    }
}
