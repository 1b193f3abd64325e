//! The pool's error type and the reasons a worker stops.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use crate::adapter::BoxError;
use crate::recycle::RecycleReason;

/// Identifies one incarnation of a worker: the slot it fills in the pool and how many times that
/// slot has been (re)started.
///
/// A replacement worker keeps its slot and gets the next generation, so an error that names a
/// `WorkerId` always names exactly one OS process.
///
/// ```
/// use snakepit::WorkerId;
/// let id = WorkerId { slot: 2, generation: 1 };
/// assert_eq!(id.to_string(), "worker 2 (generation 1)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId {
    /// The worker's place in the pool, `0..size`.
    pub slot: usize,
    /// How many times this slot was restarted before this worker; `0` for the first start.
    pub generation: u64,
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker {} (generation {})", self.slot, self.generation)
    }
}

/// Why a worker process is no longer serving.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum WorkerExit {
    /// The process exited by itself or was killed by a signal.
    Exited(ExitStatus),
    /// The process stopped answering its health check and was killed.
    HealthCheckFailed {
        /// What the failed health check reported.
        reason: String,
    },
    /// The process never became ready.
    StartFailed {
        /// What went wrong while starting it.
        reason: StartFailure,
        /// The last lines the process wrote to its standard error.
        stderr_tail: String,
    },
    /// The pool stopped the process because it is shutting down.
    Stopped,
    /// The pool retired the healthy process past one of its limits, and replaced it.
    Recycled(RecycleReason),
}

impl fmt::Display for WorkerExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkerExit::Exited(status) => match (status.code(), signal_of(status)) {
                (Some(code), _) => write!(f, "exited with status {code}"),
                (None, Some(signal)) => write!(f, "killed by signal {signal}"),
                (None, None) => write!(f, "exited ({status})"),
            },
            WorkerExit::HealthCheckFailed { reason } => {
                write!(f, "failed its health check ({reason}) and was killed")
            }
            WorkerExit::StartFailed {
                reason,
                stderr_tail,
            } => {
                write!(f, "failed to start: {reason}")?;
                if !stderr_tail.is_empty() {
                    write!(f, "; its stderr ended with:\n{stderr_tail}")?;
                }
                Ok(())
            }
            WorkerExit::Stopped => f.write_str("was stopped by the pool"),
            WorkerExit::Recycled(reason) => write!(f, "was recycled because {reason}"),
        }
    }
}

impl WorkerExit {
    /// The exit status of the process, when it exited on its own.
    pub fn status(&self) -> Option<ExitStatus> {
        match self {
            WorkerExit::Exited(status) => Some(*status),
            WorkerExit::StartFailed {
                reason: StartFailure::Exited(status),
                ..
            } => Some(*status),
            _ => None,
        }
    }

    /// The signal that killed the process, if one did.
    pub fn signal(&self) -> Option<i32> {
        self.status().as_ref().and_then(signal_of)
    }
}

fn signal_of(status: &ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

/// What went wrong while a worker was starting.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StartFailure {
    /// The adapter could not describe the command to run.
    #[error("the adapter could not build the worker command")]
    Command(#[source] Arc<BoxError>),
    /// The operating system refused to start the program.
    #[error("could not spawn `{program}`")]
    Spawn {
        /// The program that was to be run.
        program: String,
        /// The operating system's error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The adapter's `connect` returned an error.
    #[error("the adapter could not connect")]
    Connect(#[source] Arc<BoxError>),
    /// The process exited before it was ready.
    #[error("the process exited before it was ready ({0})")]
    Exited(ExitStatus),
    /// The process was not ready within the startup timeout.
    #[error("not ready within the startup timeout of {0:?}")]
    Timeout(Duration),
}

/// Everything that can go wrong in the pool.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// Every worker is busy and the wait queue already holds `capacity` requests.
    #[error("the pool's wait queue is full ({capacity} requests already waiting)")]
    QueueFull {
        /// The configured queue size.
        capacity: usize,
    },
    /// No worker became free within the queue timeout.
    #[error("no worker became free within {waited:?}")]
    QueueTimeout {
        /// How long the request waited.
        waited: Duration,
    },
    /// The request did not finish within the request timeout.
    #[error("{worker} did not answer within {after:?}")]
    RequestTimeout {
        /// The worker that was serving the request.
        worker: WorkerId,
        /// The configured request timeout.
        after: Duration,
    },
    /// The worker serving the request stopped while the request was in flight.
    #[error("{worker} {exit} while serving the request")]
    WorkerCrashed {
        /// The worker that stopped.
        worker: WorkerId,
        /// Why it stopped.
        exit: WorkerExit,
    },
    /// The worker a session was bound to is gone; its session state went with it.
    #[error(
        "session `{session}` was bound to {worker}, which {exit}; end the session and start a new one"
    )]
    SessionWorkerLost {
        /// The session's id.
        session: String,
        /// The worker the session was bound to.
        worker: WorkerId,
        /// Why that worker stopped.
        exit: WorkerExit,
    },
    /// A worker failed to start while the pool was starting.
    #[error("{worker} {exit}")]
    StartupFailed {
        /// The worker that did not start.
        worker: WorkerId,
        /// What happened (always [`WorkerExit::StartFailed`] or [`WorkerExit::Exited`]).
        exit: WorkerExit,
    },
    /// Workers failed more often than the restart-intensity limit allows, so the pool stopped
    /// restarting them and no worker is left to serve.
    #[error(
        "workers failed more than {max_restarts} times within {within:?}; the pool stopped restarting them (last failure: {last_failure})"
    )]
    RestartLimitReached {
        /// The configured restart limit.
        max_restarts: u32,
        /// The configured window.
        within: Duration,
        /// Why the last worker stopped.
        last_failure: String,
    },
    /// The pool's circuit breaker is open: recent requests failed in a row, so this one was not
    /// sent. See [`CircuitBreakerConfig`](crate::CircuitBreakerConfig).
    #[error(
        "the circuit is open after {consecutive_failures} failed requests in a row; the next probe goes through in {probe_in:?}"
    )]
    CircuitOpen {
        /// Failed requests in a row that opened the circuit.
        consecutive_failures: u32,
        /// How long until a probe request is let through (zero: a probe is in flight).
        probe_in: Duration,
    },
    /// The pool is shutting down or was shut down.
    #[error("the pool is shutting down")]
    ShuttingDown,
    /// The configuration is not usable.
    #[error("invalid pool configuration: {0}")]
    InvalidConfig(String),
    /// The per-user registry of worker processes could not be used.
    #[error("the process registry at {} is unusable", path.display())]
    Registry {
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<std::io::Error>,
    },
}

impl PoolError {
    /// A short, stable name of the error's kind, as in metrics and logs: `queue_full`,
    /// `queue_timeout`, `request_timeout`, `worker_crashed`, `session_worker_lost`,
    /// `startup_failed`, `restart_limit_reached`, `circuit_open`, `shutting_down`,
    /// `invalid_config`, `registry`.
    ///
    /// ```
    /// assert_eq!(snakepit::PoolError::ShuttingDown.kind(), "shutting_down");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            PoolError::QueueFull { .. } => "queue_full",
            PoolError::QueueTimeout { .. } => "queue_timeout",
            PoolError::RequestTimeout { .. } => "request_timeout",
            PoolError::WorkerCrashed { .. } => "worker_crashed",
            PoolError::SessionWorkerLost { .. } => "session_worker_lost",
            PoolError::StartupFailed { .. } => "startup_failed",
            PoolError::RestartLimitReached { .. } => "restart_limit_reached",
            PoolError::CircuitOpen { .. } => "circuit_open",
            PoolError::ShuttingDown => "shutting_down",
            PoolError::InvalidConfig(_) => "invalid_config",
            PoolError::Registry { .. } => "registry",
        }
    }
}

/// The pool's `Result`.
pub type Result<T, E = PoolError> = std::result::Result<T, E>;
