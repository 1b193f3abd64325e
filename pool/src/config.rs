//! Pool configuration: a plain struct with documented defaults and a builder.

use std::path::PathBuf;
use std::time::Duration;

use crate::breaker::CircuitBreakerConfig;
use crate::error::PoolError;

/// How a pool runs its workers. Build one with [`PoolConfig::builder`] or start from
/// [`PoolConfig::default`] and set fields.
///
/// ```
/// use std::time::Duration;
/// use snakepit::PoolConfig;
///
/// let config = PoolConfig::builder()
///     .size(4)
///     .max_in_flight_per_worker(8)
///     .request_timeout(Some(Duration::from_secs(30)))
///     .build()?;
/// assert_eq!(config.size, 4);
/// # Ok::<(), snakepit::PoolError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Number of workers. Default: 2.
    pub size: usize,
    /// How long one worker may take from spawn to ready. Default: 30 s.
    pub startup_timeout: Duration,
    /// How long one request may take once it has a worker; `None` waits forever. Default: 120 s.
    pub request_timeout: Option<Duration>,
    /// How many requests may wait for a free worker before new ones get
    /// [`PoolError::QueueFull`]. Default: 1024.
    pub queue_size: usize,
    /// How long a request may wait for a free worker before it gets
    /// [`PoolError::QueueTimeout`]. Default: 30 s.
    pub queue_timeout: Duration,
    /// How many requests one worker serves at once. Default: 1.
    pub max_in_flight_per_worker: usize,
    /// How often each ready worker's health is checked; `None` disables checks. Default: 10 s.
    pub health_check_interval: Option<Duration>,
    /// How long one health check may take before the worker counts as hung. Default: 5 s.
    pub health_check_timeout: Duration,
    /// Restart-intensity limit: at most this many restarts within [`restart_window`]; one more
    /// failure and the pool stops restarting. Default: 10.
    ///
    /// [`restart_window`]: PoolConfig::restart_window
    pub max_restarts: u32,
    /// The window of the restart-intensity limit. Default: 60 s.
    pub restart_window: Duration,
    /// Delay before the second restart in a row of the same worker; it doubles for each further
    /// one (the first restart is immediate). Default: 100 ms.
    pub restart_backoff: Duration,
    /// The longest delay between restarts. Default: 5 s.
    pub restart_backoff_max: Duration,
    /// How long a stopping worker gets between the polite request and `SIGKILL`. Default: 5 s.
    pub grace_period: Duration,
    /// Where the per-user registry of running pools lives; `None` chooses
    /// `$XDG_RUNTIME_DIR/snakepit`, else `<temp dir>/snakepit-<uid>`. Default: `None`.
    pub runtime_dir: Option<PathBuf>,
    /// Whether workers get `SIGKILL` when the process that owns the pool dies (Linux). Turn it
    /// off only to test orphan cleanup. Default: `true`.
    pub parent_death_signal: bool,
    /// How many lines of each worker's standard error are kept for error messages. Default: 40.
    pub stderr_tail_lines: usize,
    /// Opens the pool's circuit after this many failed requests in a row; `None` never does.
    /// A request fails when the pool reports an error for it (crash, request timeout) or the
    /// caller marks it failed ([`Checkout::mark_failed`]). Default: `None`.
    ///
    /// [`Checkout::mark_failed`]: crate::Checkout::mark_failed
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// The run id to register the pool under (letters, digits, `-`, `_`; at most 64); `None`
    /// makes a new one with [`new_run_id`](crate::new_run_id). Set it to mark processes the
    /// adapter starts outside the pool (helpers) with the same `SNAKEPIT_RUN_ID`. Default: `None`.
    pub run_id: Option<String>,
    /// Retires a worker once it has been handed this many requests; `None`: never. See
    /// [`RecycleReason`](crate::RecycleReason). Default: `None`.
    pub max_requests: Option<u64>,
    /// Retires a worker once it has been ready this long; `None`: never. Default: `None`.
    pub max_age: Option<Duration>,
    /// Retires a worker whose resident memory is above this many bytes (checked every
    /// [`memory_check_interval`](PoolConfig::memory_check_interval); Linux only, elsewhere the
    /// limit is not checked); `None`: never. Default: `None`.
    pub max_memory: Option<u64>,
    /// How often each worker's memory is read against [`max_memory`](PoolConfig::max_memory).
    /// Default: 5 s.
    pub memory_check_interval: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            size: 2,
            startup_timeout: Duration::from_secs(30),
            request_timeout: Some(Duration::from_secs(120)),
            queue_size: 1024,
            queue_timeout: Duration::from_secs(30),
            max_in_flight_per_worker: 1,
            health_check_interval: Some(Duration::from_secs(10)),
            health_check_timeout: Duration::from_secs(5),
            max_restarts: 10,
            restart_window: Duration::from_secs(60),
            restart_backoff: Duration::from_millis(100),
            restart_backoff_max: Duration::from_secs(5),
            grace_period: Duration::from_secs(5),
            runtime_dir: None,
            parent_death_signal: true,
            stderr_tail_lines: 40,
            circuit_breaker: None,
            run_id: None,
            max_requests: None,
            max_age: None,
            max_memory: None,
            memory_check_interval: Duration::from_secs(5),
        }
    }
}

impl PoolConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> PoolConfigBuilder {
        PoolConfigBuilder {
            config: PoolConfig::default(),
        }
    }

    /// Checks that the values make sense together.
    pub fn validate(&self) -> Result<(), PoolError> {
        let fail = |what: &str| Err(PoolError::InvalidConfig(what.to_owned()));
        if self.size == 0 {
            return fail("size must be at least 1");
        }
        if let Some(breaker) = &self.circuit_breaker
            && breaker.failure_threshold == 0
        {
            return fail("circuit_breaker.failure_threshold must be at least 1");
        }
        if let Some(run_id) = &self.run_id
            && (run_id.is_empty()
                || run_id.len() > 64
                || !run_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return fail("run_id must be 1 to 64 letters, digits, '-' or '_'");
        }
        if self.max_in_flight_per_worker == 0 {
            return fail("max_in_flight_per_worker must be at least 1");
        }
        if self.startup_timeout.is_zero() {
            return fail("startup_timeout must be longer than zero");
        }
        if self.health_check_interval.is_some_and(|d| d.is_zero()) {
            return fail("health_check_interval must be longer than zero (or None to disable)");
        }
        if self.max_requests == Some(0) {
            return fail("max_requests must be at least 1 (or None for no limit)");
        }
        if self.max_age.is_some_and(|d| d.is_zero()) {
            return fail("max_age must be longer than zero (or None for no limit)");
        }
        if self.max_memory == Some(0) {
            return fail("max_memory must be at least 1 byte (or None for no limit)");
        }
        if self.memory_check_interval.is_zero() {
            return fail("memory_check_interval must be longer than zero");
        }
        if self.restart_backoff > self.restart_backoff_max {
            return fail("restart_backoff must not exceed restart_backoff_max");
        }
        Ok(())
    }
}

/// Builds a [`PoolConfig`]; every method sets the field of the same name.
#[derive(Debug, Clone)]
pub struct PoolConfigBuilder {
    config: PoolConfig,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.config.$name = value;
                self
            }
        )*
    };
}

impl PoolConfigBuilder {
    setters! {
        /// See [`PoolConfig::size`].
        size: usize;
        /// See [`PoolConfig::startup_timeout`].
        startup_timeout: std::time::Duration;
        /// See [`PoolConfig::request_timeout`].
        request_timeout: Option<std::time::Duration>;
        /// See [`PoolConfig::queue_size`].
        queue_size: usize;
        /// See [`PoolConfig::queue_timeout`].
        queue_timeout: std::time::Duration;
        /// See [`PoolConfig::max_in_flight_per_worker`].
        max_in_flight_per_worker: usize;
        /// See [`PoolConfig::health_check_interval`].
        health_check_interval: Option<std::time::Duration>;
        /// See [`PoolConfig::health_check_timeout`].
        health_check_timeout: std::time::Duration;
        /// See [`PoolConfig::max_restarts`].
        max_restarts: u32;
        /// See [`PoolConfig::restart_window`].
        restart_window: std::time::Duration;
        /// See [`PoolConfig::restart_backoff`].
        restart_backoff: std::time::Duration;
        /// See [`PoolConfig::restart_backoff_max`].
        restart_backoff_max: std::time::Duration;
        /// See [`PoolConfig::grace_period`].
        grace_period: std::time::Duration;
        /// See [`PoolConfig::parent_death_signal`].
        parent_death_signal: bool;
        /// See [`PoolConfig::stderr_tail_lines`].
        stderr_tail_lines: usize;
        /// See [`PoolConfig::circuit_breaker`].
        circuit_breaker: Option<CircuitBreakerConfig>;
        /// See [`PoolConfig::max_requests`].
        max_requests: Option<u64>;
        /// See [`PoolConfig::max_age`].
        max_age: Option<std::time::Duration>;
        /// See [`PoolConfig::max_memory`].
        max_memory: Option<u64>;
        /// See [`PoolConfig::memory_check_interval`].
        memory_check_interval: std::time::Duration;
    }

    /// See [`PoolConfig::run_id`].
    pub fn run_id(mut self, run_id: impl Into<String>) -> Self {
        self.config.run_id = Some(run_id.into());
        self
    }

    /// See [`PoolConfig::runtime_dir`].
    pub fn runtime_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.runtime_dir = Some(dir.into());
        self
    }

    /// The configuration, validated.
    pub fn build(self) -> Result<PoolConfig, PoolError> {
        self.config.validate()?;
        Ok(self.config)
    }
}
