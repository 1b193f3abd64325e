//! The restart policy: exponential backoff per worker, and a restart-intensity limit for the pool
//! (OTP's `max_restarts` within `max_seconds`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use std::sync::Arc;

use crate::adapter::Adapter;
use crate::config::PoolConfig;
use crate::dispatch::lock;
use crate::error::WorkerExit;
use crate::pool::Shared;
use crate::stats::Counters;
use crate::worker::{self, GenerationEnd};

/// Keeps one worker slot filled until the pool shuts down or the restart limit is reached.
pub(crate) async fn supervise_slot<A: Adapter>(shared: Arc<Shared<A>>, slot: usize) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut backoff = Backoff::new(&shared.config);
    loop {
        let id = lock(&shared.dispatcher).worker_starting(slot);
        let (exit, uptime) = match worker::run_generation(&shared, id, &mut shutdown).await {
            GenerationEnd::Shutdown => {
                lock(&shared.dispatcher).worker_down(id, WorkerExit::Stopped, false);
                return;
            }
            GenerationEnd::Failed { exit, uptime } => (exit, uptime),
            GenerationEnd::Recycled(reason) => {
                // Not a failure: no backoff, no restart counted against the limit.
                lock(&shared.dispatcher).worker_recycled(id, reason);
                Counters::bump(&shared.counters.recycles);
                shared.metrics.recycled(&reason);
                continue;
            }
        };
        if id.generation == 0 && uptime.is_none() {
            lock(&shared.dispatcher).startup_failed(id, exit.clone());
        }
        if *shutdown.borrow() {
            lock(&shared.dispatcher).worker_down(id, exit, false);
            return;
        }
        let decision = {
            let mut intensity = shared.intensity.lock().unwrap_or_else(|p| p.into_inner());
            decide(&mut intensity, &mut backoff, uptime, Instant::now())
        };
        match decision {
            RestartDecision::RestartAfter(delay) => {
                tracing::warn!(worker = %id, %exit, ?delay, "restarting worker");
                lock(&shared.dispatcher).worker_down(id, exit, true);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = worker::signalled(&mut shutdown) => {
                        lock(&shared.dispatcher).worker_down(id, WorkerExit::Stopped, false);
                        return;
                    }
                }
                Counters::bump(&shared.counters.restarts);
                shared.metrics.restarts.increment(1);
            }
            RestartDecision::GiveUp => {
                tracing::error!(
                    worker = %id,
                    %exit,
                    max_restarts = shared.config.max_restarts,
                    window = ?shared.config.restart_window,
                    "restart-intensity limit reached; not restarting this worker"
                );
                lock(&shared.dispatcher).worker_down(id, exit, false);
                return;
            }
        }
    }
}

/// What to do after a worker failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestartDecision {
    /// Start a replacement after this delay.
    RestartAfter(Duration),
    /// The pool has restarted workers too often: stop restarting.
    GiveUp,
}

/// The pool-wide restart-intensity limit. One per pool, shared by all workers.
#[derive(Debug)]
pub(crate) struct RestartIntensity {
    max_restarts: u32,
    window: Duration,
    recent: VecDeque<Instant>,
    exhausted: bool,
}

impl RestartIntensity {
    pub(crate) fn new(config: &PoolConfig) -> Self {
        RestartIntensity {
            max_restarts: config.max_restarts,
            window: config.restart_window,
            recent: VecDeque::new(),
            exhausted: false,
        }
    }

    /// Asks for one more restart at `now`. Once refused, every later request is refused too.
    pub(crate) fn allow_restart(&mut self, now: Instant) -> bool {
        if self.exhausted {
            return false;
        }
        while let Some(&oldest) = self.recent.front() {
            if now.duration_since(oldest) >= self.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        if self.recent.len() as u64 >= u64::from(self.max_restarts) {
            self.exhausted = true;
            return false;
        }
        self.recent.push_back(now);
        true
    }

    /// Whether the limit has been reached.
    #[cfg(test)]
    pub(crate) fn exhausted(&self) -> bool {
        self.exhausted
    }
}

/// The backoff of one worker slot: the first restart after a failure is immediate, each further
/// consecutive failure doubles the delay from `restart_backoff` up to `restart_backoff_max`.
/// A worker that stayed up for a whole restart window resets the count.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    reset_after: Duration,
    consecutive_failures: u32,
}

impl Backoff {
    pub(crate) fn new(config: &PoolConfig) -> Self {
        Backoff {
            initial: config.restart_backoff,
            max: config.restart_backoff_max,
            reset_after: config.restart_window,
            consecutive_failures: 0,
        }
    }

    /// Records a failure of a worker that had been serving for `uptime` (`None`: it never became
    /// ready) and returns how long to wait before restarting it.
    pub(crate) fn next_delay(&mut self, uptime: Option<Duration>) -> Duration {
        if uptime.is_some_and(|up| up >= self.reset_after) {
            self.consecutive_failures = 0;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        match self.consecutive_failures {
            1 => Duration::ZERO,
            n => {
                let factor = 1u32.checked_shl(n - 2).unwrap_or(u32::MAX);
                self.initial.saturating_mul(factor).min(self.max)
            }
        }
    }
}

/// Decides what happens after a worker failure.
pub(crate) fn decide(
    intensity: &mut RestartIntensity,
    backoff: &mut Backoff,
    uptime: Option<Duration>,
    now: Instant,
) -> RestartDecision {
    if intensity.allow_restart(now) {
        RestartDecision::RestartAfter(backoff.next_delay(uptime))
    } else {
        RestartDecision::GiveUp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_restarts: u32, window_ms: u64) -> PoolConfig {
        PoolConfig {
            max_restarts,
            restart_window: Duration::from_millis(window_ms),
            restart_backoff: Duration::from_millis(100),
            restart_backoff_max: Duration::from_millis(1000),
            ..PoolConfig::default()
        }
    }

    #[test]
    fn intensity_refuses_the_restart_past_the_limit_and_stays_refused() {
        let mut intensity = RestartIntensity::new(&config(3, 1000));
        let t0 = Instant::now();
        assert!(intensity.allow_restart(t0));
        assert!(intensity.allow_restart(t0 + Duration::from_millis(10)));
        assert!(intensity.allow_restart(t0 + Duration::from_millis(20)));
        assert!(!intensity.allow_restart(t0 + Duration::from_millis(30)));
        assert!(intensity.exhausted());
        assert!(!intensity.allow_restart(t0 + Duration::from_secs(100)));
    }

    #[test]
    fn intensity_forgets_restarts_older_than_the_window() {
        let mut intensity = RestartIntensity::new(&config(2, 1000));
        let t0 = Instant::now();
        assert!(intensity.allow_restart(t0));
        assert!(intensity.allow_restart(t0 + Duration::from_millis(500)));
        assert!(intensity.allow_restart(t0 + Duration::from_millis(1200)));
        assert!(!intensity.allow_restart(t0 + Duration::from_millis(1300)));
    }

    #[test]
    fn zero_max_restarts_never_restarts() {
        let mut intensity = RestartIntensity::new(&config(0, 1000));
        assert!(!intensity.allow_restart(Instant::now()));
    }

    #[test]
    fn backoff_is_immediate_then_doubles_up_to_the_cap() {
        let mut backoff = Backoff::new(&config(100, 60_000));
        let delays: Vec<_> = (0..7)
            .map(|_| backoff.next_delay(None).as_millis())
            .collect();
        assert_eq!(delays, [0, 100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn backoff_resets_after_a_worker_stayed_up_for_a_window() {
        let mut backoff = Backoff::new(&config(100, 1000));
        backoff.next_delay(None);
        backoff.next_delay(None);
        assert_eq!(
            backoff
                .next_delay(Some(Duration::from_millis(10)))
                .as_millis(),
            200
        );
        assert_eq!(
            backoff.next_delay(Some(Duration::from_secs(2))),
            Duration::ZERO
        );
    }
}
