//! An opt-in retry policy: bounded attempts with exponential backoff and full jitter.
//!
//! The pool never retries on its own: only the caller knows whether a request is safe to send
//! twice (an idempotent read, a stateless model call) or not (a call that changes state held by
//! the worker). [`RetryPolicy::run`] retries only errors its predicate accepts; for pool errors,
//! [`PoolError::is_retryable`] says which ones a retry can cure.

use std::future::Future;
use std::time::Duration;

use crate::error::PoolError;

/// How often and how patiently to retry a request that failed in a way a retry can cure.
///
/// Attempt `n` (counting from 1) that fails waits a random delay in
/// `[(1 - jitter) × d, d]`, where `d = min(initial_backoff × 2^(n-1), max_backoff)`, before
/// attempt `n + 1`. Jitter spreads out the retries of many callers that failed together (every
/// request in flight on a worker that crashed), so they do not hit the pool in one burst.
///
/// ```
/// use std::time::Duration;
/// use snakepit::{PoolError, RetryPolicy};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let policy = RetryPolicy::new(3).initial_backoff(Duration::from_millis(1));
/// let mut calls = 0;
/// let result: Result<u32, PoolError> = policy
///     .run(PoolError::is_retryable, |attempt| {
///         calls += 1;
///         async move {
///             if attempt < 3 { Err(PoolError::ShuttingDown) } else { Ok(attempt) }
///         }
///     })
///     .await;
/// // `ShuttingDown` is not retryable: the first failure is returned as it is.
/// assert!(matches!(result, Err(PoolError::ShuttingDown)));
/// assert_eq!(calls, 1);
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    jitter: f64,
}

impl RetryPolicy {
    /// At most `max_attempts` attempts in all (`1` never retries; `0` counts as `1`), with a
    /// 50 ms initial backoff, a 2 s cap and full jitter.
    pub fn new(max_attempts: u32) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            jitter: 1.0,
        }
    }

    /// The delay after the first failed attempt, before jitter. Default: 50 ms.
    pub fn initial_backoff(mut self, delay: Duration) -> Self {
        self.initial_backoff = delay;
        self
    }

    /// The longest delay between two attempts. Default: 2 s.
    pub fn max_backoff(mut self, delay: Duration) -> Self {
        self.max_backoff = delay;
        self
    }

    /// The share of each delay that is random, from `0.0` (none: exactly the exponential delay)
    /// to `1.0` (anything from zero to it; the default). Clamped to that range.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_nan() {
            1.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        self
    }

    /// The largest number of attempts.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay after failed attempt `attempt` (from 1), jitter applied.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let ceiling = self
            .initial_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff);
        let floor = ceiling.mul_f64(1.0 - self.jitter);
        floor + (ceiling - floor).mul_f64(fastrand::f64())
    }

    /// Runs `attempt(n)` for `n = 1, 2, …` until it succeeds, fails with an error `retryable`
    /// rejects, or the attempts are used up; returns the last result.
    pub async fn run<T, E, F, Fut>(
        &self,
        retryable: impl Fn(&E) -> bool,
        mut attempt: F,
    ) -> Result<T, E>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut n = 1;
        loop {
            match attempt(n).await {
                Err(e) if n < self.max_attempts && retryable(&e) => {
                    let delay = self.delay(n);
                    tracing::debug!(attempt = n, ?delay, "retrying after a retryable failure");
                    tokio::time::sleep(delay).await;
                    n += 1;
                }
                result => return result,
            }
        }
    }
}

impl Default for RetryPolicy {
    /// Three attempts, 50 ms initial backoff, 2 s cap, full jitter.
    fn default() -> Self {
        RetryPolicy::new(3)
    }
}

impl PoolError {
    /// Whether sending the same request again may succeed without ever running twice at once:
    /// the worker serving it crashed (it is being replaced, and the request died with it).
    ///
    /// A [`RequestTimeout`](PoolError::RequestTimeout) is not: the worker may still be working on
    /// the request, so a second attempt could run beside the first. Retry a timeout only once the
    /// worker has confirmed that it stopped the first attempt (see [`is_timeout`](Self::is_timeout)).
    /// Queue and configuration errors, an open circuit and shutdown are not retryable either.
    /// Whether the request is *safe* to send twice is the caller's call.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PoolError::WorkerCrashed { .. })
    }

    /// Whether the request timed out: the worker may still be working on it.
    pub fn is_timeout(&self) -> bool {
        matches!(self, PoolError::RequestTimeout { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_up_to_the_cap_and_stay_within_the_jitter_band() {
        let policy = RetryPolicy::new(10)
            .initial_backoff(Duration::from_millis(10))
            .max_backoff(Duration::from_millis(100))
            .jitter(0.5);
        for (attempt, ceiling_ms) in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (9, 100)] {
            for _ in 0..200 {
                let delay = policy.delay(attempt);
                let ceiling = Duration::from_millis(ceiling_ms);
                assert!(
                    delay <= ceiling,
                    "attempt {attempt}: {delay:?} > {ceiling:?}"
                );
                assert!(
                    delay >= ceiling / 2,
                    "attempt {attempt}: {delay:?} < half of {ceiling:?}"
                );
            }
        }
        let exact = policy.jitter(0.0);
        assert_eq!(exact.delay(3), Duration::from_millis(40));
    }

    #[test]
    fn full_jitter_spreads_delays() {
        let policy = RetryPolicy::new(3).initial_backoff(Duration::from_millis(100));
        let delays: std::collections::BTreeSet<_> = (0..50).map(|_| policy.delay(1)).collect();
        assert!(delays.len() > 40, "jittered delays repeat: {delays:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_retryable_errors_until_the_attempts_are_used_up() {
        let policy = RetryPolicy::new(4).jitter(0.0);
        let worker = crate::WorkerId {
            slot: 0,
            generation: 0,
        };
        let mut seen = Vec::new();
        let result: Result<(), PoolError> = policy
            .run(PoolError::is_retryable, |n| {
                seen.push(n);
                async move {
                    Err(PoolError::WorkerCrashed {
                        worker,
                        exit: crate::WorkerExit::Stopped,
                    })
                }
            })
            .await;
        assert!(matches!(result, Err(PoolError::WorkerCrashed { .. })));
        assert_eq!(seen, [1, 2, 3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_is_not_retried_by_itself() {
        // The worker may still be working on a timed-out request: a second attempt could run
        // beside it.
        let worker = crate::WorkerId {
            slot: 0,
            generation: 0,
        };
        let mut attempts = 0;
        let result: Result<(), PoolError> = RetryPolicy::new(4)
            .run(PoolError::is_retryable, |_| {
                attempts += 1;
                async move {
                    Err(PoolError::RequestTimeout {
                        worker,
                        after: Duration::from_secs(1),
                    })
                }
            })
            .await;
        assert!(result.unwrap_err().is_timeout());
        assert_eq!(attempts, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_the_first_success() {
        let policy = RetryPolicy::new(5);
        let worker = crate::WorkerId {
            slot: 1,
            generation: 2,
        };
        let result = policy
            .run(PoolError::is_retryable, |n| async move {
                if n < 3 {
                    Err(PoolError::WorkerCrashed {
                        worker,
                        exit: crate::WorkerExit::Stopped,
                    })
                } else {
                    Ok(n)
                }
            })
            .await;
        assert_eq!(result.unwrap(), 3);
    }
}
