//! A snapshot of what the pool is doing, and the counters behind it.

use std::sync::atomic::{AtomicU64, Ordering};

/// A point-in-time view of a pool, from [`Pool::stats`](crate::Pool::stats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Configured number of workers.
    pub size: usize,
    /// Workers ready to serve (including busy ones).
    pub workers_ready: usize,
    /// Ready workers with at least one request in flight.
    pub workers_busy: usize,
    /// Workers being spawned or connected.
    pub workers_starting: usize,
    /// Dead workers waiting for their replacement.
    pub workers_restarting: usize,
    /// Dead workers that will not be replaced.
    pub workers_stopped: usize,
    /// Ready workers past a recycling limit, finishing their requests before their replacement.
    pub workers_retiring: usize,
    /// Requests currently being served.
    pub in_flight: usize,
    /// Requests waiting for a free worker.
    pub queue_len: usize,
    /// Sessions bound to a worker.
    pub sessions: usize,
    /// Workers restarted since the pool started.
    pub restarts: u64,
    /// Healthy workers retired past a recycling limit and replaced since the pool started.
    pub recycles: u64,
    /// Requests that got a worker since the pool started.
    pub requests: u64,
    /// Requests that ended in a pool error (queue full, timeout, worker crash, ...).
    pub errors: u64,
}

/// The cumulative counters, shared by the pool and its checkouts.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) restarts: AtomicU64,
    pub(crate) recycles: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) errors: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fill(&self, stats: &mut PoolStats) {
        stats.restarts = self.restarts.load(Ordering::Relaxed);
        stats.recycles = self.recycles.load(Ordering::Relaxed);
        stats.requests = self.requests.load(Ordering::Relaxed);
        stats.errors = self.errors.load(Ordering::Relaxed);
    }
}
