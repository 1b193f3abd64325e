//! The pool's metrics, through the [`metrics`] facade: whatever recorder the program installs
//! (Prometheus, StatsD, OpenTelemetry, a test's) receives them; without one they cost nothing.
//!
//! Handles are taken when the pool starts, so install the recorder before starting a pool.

use metrics::{
    Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram,
};

use crate::breaker::CircuitState;
use crate::error::PoolError;
use crate::recycle::RecycleReason;

/// Requests that got a worker (counter).
pub const REQUESTS: &str = "snakepit_requests_total";
/// Requests that ended in a pool error, by `kind` ([`PoolError::kind`]) (counter).
pub const ERRORS: &str = "snakepit_errors_total";
/// How long requests waited for a worker, in seconds (histogram).
pub const QUEUE_WAIT: &str = "snakepit_queue_wait_seconds";
/// How long requests took on their worker, in seconds (histogram).
pub const REQUEST_DURATION: &str = "snakepit_request_duration_seconds";
/// Workers restarted after a failure (counter).
pub const RESTARTS: &str = "snakepit_worker_restarts_total";
/// Healthy workers recycled, by `reason` (`max_requests`, `max_age`, `max_memory`) (counter).
pub const RECYCLES: &str = "snakepit_worker_recycles_total";
/// Workers by `state`: `idle`, `busy`, `retiring`, `starting`, `restarting`, `stopped` (gauge).
pub const WORKERS: &str = "snakepit_workers";
/// Requests waiting for a worker (gauge).
pub const QUEUE_DEPTH: &str = "snakepit_queue_depth";
/// Requests being served (gauge).
pub const IN_FLIGHT: &str = "snakepit_in_flight";
/// The circuit breaker: 0 closed, 1 half-open, 2 open (gauge; only with a breaker).
pub const CIRCUIT_STATE: &str = "snakepit_circuit_state";

/// The handles of one pool's metrics.
pub(crate) struct PoolMetrics {
    pub(crate) requests: Counter,
    pub(crate) queue_wait: Histogram,
    pub(crate) request_duration: Histogram,
    pub(crate) restarts: Counter,
    pub(crate) workers: WorkerGauges,
    pub(crate) queue_depth: Gauge,
    pub(crate) in_flight: Gauge,
    circuit: Gauge,
}

/// Worker counts by state.
pub(crate) struct WorkerGauges {
    pub(crate) idle: Gauge,
    pub(crate) busy: Gauge,
    pub(crate) retiring: Gauge,
    pub(crate) starting: Gauge,
    pub(crate) restarting: Gauge,
    pub(crate) stopped: Gauge,
}

impl PoolMetrics {
    pub(crate) fn new() -> Self {
        describe_counter!(REQUESTS, "Requests that got a worker.");
        describe_counter!(ERRORS, "Requests that ended in a pool error, by kind.");
        describe_histogram!(
            QUEUE_WAIT,
            metrics::Unit::Seconds,
            "Time requests waited for a worker."
        );
        describe_histogram!(
            REQUEST_DURATION,
            metrics::Unit::Seconds,
            "Time requests took on their worker."
        );
        describe_counter!(RESTARTS, "Workers restarted after a failure.");
        describe_counter!(
            RECYCLES,
            "Healthy workers recycled past a limit, by reason."
        );
        describe_gauge!(WORKERS, "Workers by state.");
        describe_gauge!(QUEUE_DEPTH, "Requests waiting for a worker.");
        describe_gauge!(IN_FLIGHT, "Requests being served.");
        describe_gauge!(
            CIRCUIT_STATE,
            "The circuit breaker: 0 closed, 1 half-open, 2 open."
        );
        let workers = |state: &'static str| metrics::gauge!(WORKERS, "state" => state);
        PoolMetrics {
            requests: counter!(REQUESTS),
            queue_wait: metrics::histogram!(QUEUE_WAIT),
            request_duration: metrics::histogram!(REQUEST_DURATION),
            restarts: counter!(RESTARTS),
            workers: WorkerGauges {
                idle: workers("idle"),
                busy: workers("busy"),
                retiring: workers("retiring"),
                starting: workers("starting"),
                restarting: workers("restarting"),
                stopped: workers("stopped"),
            },
            queue_depth: metrics::gauge!(QUEUE_DEPTH),
            in_flight: metrics::gauge!(IN_FLIGHT),
            circuit: metrics::gauge!(CIRCUIT_STATE),
        }
    }

    /// Counts one request that ended in `error`.
    pub(crate) fn error(&self, error: &PoolError) {
        counter!(ERRORS, "kind" => error.kind()).increment(1);
    }

    /// Counts one recycled worker.
    pub(crate) fn recycled(&self, reason: &RecycleReason) {
        counter!(RECYCLES, "reason" => reason.kind()).increment(1);
    }

    /// Publishes where the circuit stands.
    pub(crate) fn circuit(&self, state: CircuitState) {
        self.circuit.set(match state {
            CircuitState::Closed { .. } => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open { .. } => 2.0,
        });
    }
}
