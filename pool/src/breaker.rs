//! A circuit breaker per pool: after `failure_threshold` failed requests in a row the pool stops
//! sending requests for `open_for`, then lets one probe through (half-open); the probe's outcome
//! closes the circuit or opens it again. A broken dependency behind every worker (an LM provider
//! that is down) then costs one probe per interval instead of a retry storm.

use std::time::{Duration, Instant};

use crate::error::PoolError;

/// When a pool's circuit opens and for how long; see [`PoolConfig::circuit_breaker`].
///
/// [`PoolConfig::circuit_breaker`]: crate::PoolConfig::circuit_breaker
///
/// ```
/// use std::time::Duration;
/// use snakepit::{CircuitBreakerConfig, PoolConfig};
///
/// let config = PoolConfig::builder()
///     .circuit_breaker(Some(CircuitBreakerConfig::new(5, Duration::from_secs(10))))
///     .build()?;
/// assert_eq!(config.circuit_breaker.unwrap().failure_threshold, 5);
/// # Ok::<(), snakepit::PoolError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CircuitBreakerConfig {
    /// How many failed requests in a row open the circuit. At least 1.
    pub failure_threshold: u32,
    /// How long the circuit stays open before one probe request is let through.
    pub open_for: Duration,
}

impl CircuitBreakerConfig {
    /// Opens after `failure_threshold` failures in a row, probes again after `open_for`.
    pub fn new(failure_threshold: u32, open_for: Duration) -> Self {
        CircuitBreakerConfig {
            failure_threshold,
            open_for,
        }
    }
}

/// Where a pool's circuit stands, from [`Pool::circuit_state`](crate::Pool::circuit_state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Requests flow; fewer than the threshold of failures in a row.
    Closed {
        /// Failed requests in a row so far.
        consecutive_failures: u32,
    },
    /// Requests fail fast with [`PoolError::CircuitOpen`] until the probe time.
    Open {
        /// How long until a probe is let through.
        probe_in: Duration,
    },
    /// The open time is over: the next request (or the one in flight) is the probe.
    HalfOpen,
}

/// What [`Breaker::admit`] let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Normal,
    Probe,
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, failures: u32 },
    HalfOpen { probing: bool, failures: u32 },
}

/// The breaker's state machine. One per pool, behind a mutex.
#[derive(Debug)]
pub(crate) struct Breaker {
    config: CircuitBreakerConfig,
    state: State,
}

impl Breaker {
    pub(crate) fn new(config: CircuitBreakerConfig) -> Self {
        Breaker {
            config,
            state: State::Closed { failures: 0 },
        }
    }

    /// Lets a request through, as a normal request or as the half-open probe, or refuses it.
    pub(crate) fn admit(&mut self, now: Instant) -> Result<Admission, PoolError> {
        match self.state {
            State::Closed { .. } => Ok(Admission::Normal),
            State::Open { until, failures } if now < until => Err(PoolError::CircuitOpen {
                consecutive_failures: failures,
                probe_in: until - now,
            }),
            State::Open { failures, .. }
            | State::HalfOpen {
                probing: false,
                failures,
            } => {
                self.state = State::HalfOpen {
                    probing: true,
                    failures,
                };
                tracing::info!("circuit half-open: letting one probe request through");
                Ok(Admission::Probe)
            }
            State::HalfOpen {
                probing: true,
                failures,
            } => Err(PoolError::CircuitOpen {
                consecutive_failures: failures,
                probe_in: Duration::ZERO,
            }),
        }
    }

    /// Records how an admitted request ended: `Some(true)` succeeded, `Some(false)` failed,
    /// `None` ended without an outcome (cancelled, or never reached a worker).
    pub(crate) fn record(&mut self, admission: Admission, outcome: Option<bool>, now: Instant) {
        let open = |failures| State::Open {
            until: now + self.config.open_for,
            failures,
        };
        self.state = match (&self.state, admission, outcome) {
            (_, Admission::Probe, Some(true)) | (State::Closed { .. }, _, Some(true)) => {
                if !matches!(self.state, State::Closed { failures: 0 }) {
                    tracing::info!("circuit closed");
                }
                State::Closed { failures: 0 }
            }
            (State::Closed { failures }, _, Some(false)) => {
                let failures = failures + 1;
                if failures >= self.config.failure_threshold.max(1) {
                    tracing::warn!(
                        failures,
                        open_for = ?self.config.open_for,
                        "circuit opened after failures in a row"
                    );
                    open(failures)
                } else {
                    State::Closed { failures }
                }
            }
            (State::HalfOpen { failures, .. }, Admission::Probe, Some(false)) => {
                tracing::warn!("circuit probe failed; open again");
                open(failures + 1)
            }
            (State::HalfOpen { failures, .. }, Admission::Probe, None) => State::HalfOpen {
                probing: false,
                failures: *failures,
            },
            // A request admitted before the circuit opened, ending while it is open or
            // half-open: it changes nothing (only the probe decides).
            (State::Open { until, failures }, _, _) => State::Open {
                until: *until,
                failures: *failures,
            },
            (State::HalfOpen { probing, failures }, _, _) => State::HalfOpen {
                probing: *probing,
                failures: *failures,
            },
            (State::Closed { failures }, _, None) => State::Closed {
                failures: *failures,
            },
        };
    }

    pub(crate) fn state(&self, now: Instant) -> CircuitState {
        match self.state {
            State::Closed { failures } => CircuitState::Closed {
                consecutive_failures: failures,
            },
            State::Open { until, .. } if now < until => CircuitState::Open {
                probe_in: until - now,
            },
            State::Open { .. } | State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(CircuitBreakerConfig::new(3, Duration::from_secs(10)))
    }

    #[test]
    fn opens_after_the_threshold_of_failures_in_a_row() {
        let mut b = breaker();
        let t = Instant::now();
        for _ in 0..2 {
            let a = b.admit(t).unwrap();
            b.record(a, Some(false), t);
        }
        // A success resets the count.
        let a = b.admit(t).unwrap();
        b.record(a, Some(true), t);
        for _ in 0..3 {
            let a = b.admit(t).unwrap();
            b.record(a, Some(false), t);
        }
        match b.admit(t + Duration::from_secs(1)) {
            Err(PoolError::CircuitOpen {
                consecutive_failures: 3,
                probe_in,
            }) => assert_eq!(probe_in, Duration::from_secs(9)),
            other => panic!("expected an open circuit, got {other:?}"),
        }
    }

    #[test]
    fn lets_one_probe_through_when_half_open_and_follows_its_outcome() {
        let mut b = breaker();
        let t = Instant::now();
        for _ in 0..3 {
            let a = b.admit(t).unwrap();
            b.record(a, Some(false), t);
        }
        let later = t + Duration::from_secs(10);
        assert_eq!(b.state(later), CircuitState::HalfOpen);
        let probe = b.admit(later).unwrap();
        assert_eq!(probe, Admission::Probe);
        // While the probe is out, everyone else fails fast.
        assert!(matches!(b.admit(later), Err(PoolError::CircuitOpen { .. })));
        // A failed probe opens the circuit again for a full interval.
        b.record(probe, Some(false), later);
        assert!(matches!(
            b.state(later + Duration::from_secs(5)),
            CircuitState::Open { .. }
        ));
        // A cancelled probe hands the probe to the next request; a successful one closes.
        let again = later + Duration::from_secs(10);
        let probe = b.admit(again).unwrap();
        b.record(probe, None, again);
        let probe = b.admit(again).unwrap();
        assert_eq!(probe, Admission::Probe);
        b.record(probe, Some(true), again);
        assert_eq!(
            b.state(again),
            CircuitState::Closed {
                consecutive_failures: 0
            }
        );
        assert_eq!(b.admit(again).unwrap(), Admission::Normal);
    }

    #[test]
    fn late_results_of_requests_admitted_before_opening_change_nothing() {
        let mut b = breaker();
        let t = Instant::now();
        let early = b.admit(t).unwrap();
        for _ in 0..3 {
            let a = b.admit(t).unwrap();
            b.record(a, Some(false), t);
        }
        b.record(early, Some(true), t);
        assert!(matches!(b.state(t), CircuitState::Open { .. }));
    }
}
