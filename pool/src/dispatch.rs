//! Who serves the next request: worker slots, the wait queue and session bindings.
//!
//! Pure bookkeeping under one mutex, never held across an await: no I/O and no processes here, so
//! every rule (least-loaded choice, in-flight limit, queue bound, affinity) is decided in one place.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::config::PoolConfig;
use crate::error::{PoolError, WorkerExit, WorkerId};
use crate::recycle::RecycleReason;
use crate::session::Affinity;
use crate::stats::PoolStats;
use crate::telemetry::PoolMetrics;

/// Where one worker slot is in its life.
#[derive(Debug, Clone)]
pub(crate) enum SlotStatus {
    /// A process is being spawned or connected.
    Starting,
    /// Serving requests.
    Ready,
    /// Dead; a replacement will be started.
    Restarting(WorkerExit),
    /// Dead for good (restart limit reached or pool shut down).
    Stopped(WorkerExit),
}

struct Slot<C> {
    generation: u64,
    started: bool,
    status: SlotStatus,
    /// Why the slot's last process stopped, kept after its replacement.
    previous_exit: Option<WorkerExit>,
    in_flight: usize,
    connection: Option<Arc<C>>,
    death: watch::Sender<Option<WorkerExit>>,
    /// Requests handed to this generation.
    served: u64,
    /// Why this generation is retiring, once it is: it takes no new requests.
    retiring: Option<RecycleReason>,
    /// Set once a retiring generation has nothing left to serve: its worker may stop.
    drained: watch::Sender<Option<RecycleReason>>,
}

struct Binding {
    worker: WorkerId,
    affinity: Affinity,
    lost: Option<WorkerExit>,
}

enum Target {
    Any {
        prefer: Option<usize>,
        bind: Option<(String, Affinity)>,
    },
    Worker {
        worker: WorkerId,
        session: String,
    },
}

type Reply<C> = oneshot::Sender<Result<Lease<C>, PoolError>>;

struct Waiter<C> {
    id: u64,
    target: Target,
    reply: Reply<C>,
}

/// The right to send one request to one worker. Dropping it gives the capacity back.
pub(crate) struct Lease<C> {
    home: Weak<Mutex<Dispatcher<C>>>,
    pub(crate) worker: WorkerId,
    pub(crate) connection: Arc<C>,
    pub(crate) death: watch::Receiver<Option<WorkerExit>>,
    armed: bool,
}

impl<C> Drop for Lease<C> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(home) = self.home.upgrade() {
            lock(&home).release(self.worker);
        }
    }
}

/// The outcome of asking for a worker.
pub(crate) enum Acquired<C> {
    /// A worker had capacity.
    Now(Lease<C>),
    /// The request waits in the queue; the receiver gets the lease or an error.
    Queued {
        id: u64,
        receiver: oneshot::Receiver<Result<Lease<C>, PoolError>>,
    },
}

/// Locks the dispatcher, recovering from a panic elsewhere (its state stays consistent because
/// every method finishes its bookkeeping before anything can panic).
pub(crate) fn lock<C>(d: &Mutex<Dispatcher<C>>) -> std::sync::MutexGuard<'_, Dispatcher<C>> {
    d.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) struct Dispatcher<C> {
    me: Weak<Mutex<Dispatcher<C>>>,
    slots: Vec<Slot<C>>,
    waiters: VecDeque<Waiter<C>>,
    sessions: HashMap<String, Binding>,
    max_in_flight: usize,
    max_requests: Option<u64>,
    queue_capacity: usize,
    max_restarts: u32,
    restart_window: Duration,
    cursor: usize,
    next_waiter: u64,
    closed: Option<PoolError>,
    startup_failure: Option<PoolError>,
    changed: watch::Sender<u64>,
    metrics: Arc<PoolMetrics>,
}

impl<C> Dispatcher<C> {
    pub(crate) fn new(config: &PoolConfig, metrics: Arc<PoolMetrics>) -> Arc<Mutex<Self>> {
        Arc::new_cyclic(|me| {
            Mutex::new(Dispatcher {
                me: me.clone(),
                slots: (0..config.size)
                    .map(|_| Slot {
                        generation: 0,
                        started: false,
                        status: SlotStatus::Starting,
                        previous_exit: None,
                        in_flight: 0,
                        connection: None,
                        death: watch::channel(None).0,
                        served: 0,
                        retiring: None,
                        drained: watch::channel(None).0,
                    })
                    .collect(),
                waiters: VecDeque::new(),
                sessions: HashMap::new(),
                max_in_flight: config.max_in_flight_per_worker,
                max_requests: config.max_requests,
                queue_capacity: config.queue_size,
                max_restarts: config.max_restarts,
                restart_window: config.restart_window,
                cursor: 0,
                next_waiter: 0,
                closed: None,
                startup_failure: None,
                changed: watch::channel(0).0,
                metrics,
            })
        })
    }

    /// A receiver that sees a new value whenever a worker becomes ready or fails.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
        self.publish();
    }

    /// Sets the gauges of workers by state, queue depth and requests in flight.
    fn publish(&self) {
        let (mut idle, mut busy, mut retiring, mut starting, mut restarting, mut stopped) =
            (0u32, 0u32, 0u32, 0u32, 0u32, 0u32);
        let mut in_flight = 0;
        for s in &self.slots {
            match s.status {
                SlotStatus::Ready if s.retiring.is_some() => retiring += 1,
                SlotStatus::Ready if s.in_flight > 0 => busy += 1,
                SlotStatus::Ready => idle += 1,
                SlotStatus::Starting => starting += 1,
                SlotStatus::Restarting(_) => restarting += 1,
                SlotStatus::Stopped(_) => stopped += 1,
            }
            in_flight += s.in_flight;
        }
        let workers = &self.metrics.workers;
        workers.idle.set(idle);
        workers.busy.set(busy);
        workers.retiring.set(retiring);
        workers.starting.set(starting);
        workers.restarting.set(restarting);
        workers.stopped.set(stopped);
        self.metrics.in_flight.set(in_flight as f64);
        self.metrics.queue_depth.set(self.waiters.len() as f64);
    }

    /// Asks for a worker for one request.
    pub(crate) fn acquire(
        &mut self,
        session: Option<(&str, Affinity)>,
    ) -> Result<Acquired<C>, PoolError> {
        if let Some(error) = &self.closed {
            return Err(error.clone());
        }
        let target = match session {
            None => Target::Any {
                prefer: None,
                bind: None,
            },
            Some((session, affinity)) => match self.sessions.get(session) {
                Some(binding) => {
                    if let Some(exit) = &binding.lost {
                        return Err(PoolError::SessionWorkerLost {
                            session: session.to_owned(),
                            worker: binding.worker,
                            exit: exit.clone(),
                        });
                    }
                    match affinity {
                        Affinity::Strict => Target::Worker {
                            worker: binding.worker,
                            session: session.to_owned(),
                        },
                        Affinity::Hint => Target::Any {
                            prefer: Some(binding.worker.slot),
                            bind: None,
                        },
                    }
                }
                None => Target::Any {
                    prefer: None,
                    bind: Some((session.to_owned(), affinity)),
                },
            },
        };
        if let Some(slot) = self.pick(&target) {
            self.bind(&target, slot);
            let lease = self.grant(slot);
            self.publish();
            return Ok(Acquired::Now(lease));
        }
        if self.waiters.len() >= self.queue_capacity {
            return Err(PoolError::QueueFull {
                capacity: self.queue_capacity,
            });
        }
        let (reply, receiver) = oneshot::channel();
        let id = self.next_waiter;
        self.next_waiter += 1;
        self.waiters.push_back(Waiter { id, target, reply });
        self.publish();
        Ok(Acquired::Queued { id, receiver })
    }

    /// Removes a waiter that gave up. Returns `false` if it was already served.
    pub(crate) fn cancel(&mut self, id: u64) -> bool {
        let before = self.waiters.len();
        self.waiters.retain(|w| w.id != id);
        self.publish();
        self.waiters.len() != before
    }

    /// Whether `slot` can take one more request: a retiring worker takes only those of the
    /// strict sessions still bound to it (`bound`).
    fn accepts(&self, slot: usize, bound: bool) -> bool {
        let s = &self.slots[slot];
        matches!(s.status, SlotStatus::Ready)
            && s.in_flight < self.max_in_flight
            && (bound || s.retiring.is_none())
    }

    fn has_capacity(&self, slot: usize) -> bool {
        self.accepts(slot, false)
    }

    fn least_loaded(&mut self) -> Option<usize> {
        let n = self.slots.len();
        let best = (0..n)
            .map(|i| (self.cursor + i) % n)
            .filter(|&slot| self.has_capacity(slot))
            .min_by_key(|&slot| self.slots[slot].in_flight)?;
        self.cursor = (best + 1) % n;
        Some(best)
    }

    fn pick(&mut self, target: &Target) -> Option<usize> {
        match target {
            Target::Worker { worker, .. } => {
                let slot = &self.slots[worker.slot];
                (slot.generation == worker.generation && self.accepts(worker.slot, true))
                    .then_some(worker.slot)
            }
            Target::Any { prefer, bind } => {
                // A session bound by an earlier waiter while this one queued follows that binding.
                let bound = bind.as_ref().and_then(|(session, affinity)| {
                    self.sessions.get(session).map(|b| (b.worker, *affinity))
                });
                match bound {
                    Some((worker, Affinity::Strict)) => (self.slots[worker.slot].generation
                        == worker.generation
                        && self.accepts(worker.slot, true))
                    .then_some(worker.slot),
                    Some((worker, Affinity::Hint)) if self.has_capacity(worker.slot) => {
                        Some(worker.slot)
                    }
                    _ => match prefer {
                        Some(slot) if self.has_capacity(*slot) => Some(*slot),
                        _ => self.least_loaded(),
                    },
                }
            }
        }
    }

    fn bind(&mut self, target: &Target, slot: usize) {
        if let Target::Any {
            bind: Some((session, affinity)),
            ..
        } = target
        {
            let worker = WorkerId {
                slot,
                generation: self.slots[slot].generation,
            };
            self.sessions.entry(session.clone()).or_insert(Binding {
                worker,
                affinity: *affinity,
                lost: None,
            });
        }
    }

    fn grant(&mut self, slot: usize) -> Lease<C> {
        let s = &mut self.slots[slot];
        s.in_flight += 1;
        s.served += 1;
        let worker = WorkerId {
            slot,
            generation: s.generation,
        };
        if let Some(max) = self.max_requests
            && s.served >= max
        {
            self.retire(worker, RecycleReason::MaxRequests(max));
        }
        let s = &self.slots[slot];
        Lease {
            home: self.me.clone(),
            worker: WorkerId {
                slot,
                generation: s.generation,
            },
            connection: s
                .connection
                .clone()
                .expect("a ready slot always has a connection"),
            death: s.death.subscribe(),
            armed: true,
        }
    }

    /// Hands free capacity to waiters, oldest first, skipping those whose worker is busy.
    fn dispatch(&mut self) {
        let mut i = 0;
        while i < self.waiters.len() {
            if !(0..self.slots.len()).any(|s| self.accepts(s, true)) {
                return;
            }
            let target = std::mem::replace(
                &mut self.waiters[i].target,
                Target::Any {
                    prefer: None,
                    bind: None,
                },
            );
            let Some(slot) = self.pick(&target) else {
                self.waiters[i].target = target;
                i += 1;
                continue;
            };
            let waiter = self.waiters.remove(i).expect("index checked above");
            let lease = self.grant(slot);
            match waiter.reply.send(Ok(lease)) {
                Ok(()) => self.bind(&target, slot),
                Err(returned) => {
                    // The waiter gave up; take the capacity back without re-entering `release`.
                    if let Ok(mut lease) = returned {
                        lease.armed = false;
                    }
                    self.slots[slot].in_flight -= 1;
                    self.check_drained(slot);
                }
            }
        }
    }

    /// Gives back the capacity of one finished request.
    pub(crate) fn release(&mut self, worker: WorkerId) {
        let s = &mut self.slots[worker.slot];
        if s.generation == worker.generation
            && matches!(s.status, SlotStatus::Ready)
            && s.in_flight > 0
        {
            s.in_flight -= 1;
            self.dispatch();
            self.check_drained(worker.slot);
            self.publish();
        }
    }

    /// Retires `worker` (past a recycling limit): it takes no new requests, sessions that only
    /// prefer it (hint affinity) move on, and once nothing is in flight on it and no strict
    /// session is bound to it, its worker task is told to stop it. Retiring twice keeps the first
    /// reason.
    pub(crate) fn retire(&mut self, worker: WorkerId, reason: RecycleReason) {
        let s = &mut self.slots[worker.slot];
        if s.generation != worker.generation
            || !matches!(s.status, SlotStatus::Ready)
            || s.retiring.is_some()
        {
            return;
        }
        s.retiring = Some(reason);
        tracing::info!(%worker, %reason, "retiring worker");
        self.sessions.retain(|_, b| {
            !(b.worker == worker && b.affinity == Affinity::Hint && b.lost.is_none())
        });
        self.check_drained(worker.slot);
        self.publish();
    }

    /// Tells a retiring slot's worker to stop once it has nothing left to serve.
    fn check_drained(&mut self, slot: usize) {
        let s = &self.slots[slot];
        let Some(reason) = s.retiring else { return };
        let worker = WorkerId {
            slot,
            generation: s.generation,
        };
        let pinned = self
            .sessions
            .values()
            .any(|b| b.worker == worker && b.lost.is_none());
        if s.in_flight == 0 && !pinned && s.drained.borrow().is_none() {
            s.drained.send_replace(Some(reason));
        }
    }

    /// Resolves once the retiring `worker` has nothing left to serve, with the reason it retired.
    pub(crate) fn drained_signal(
        &self,
        worker: WorkerId,
    ) -> watch::Receiver<Option<RecycleReason>> {
        self.slots[worker.slot].drained.subscribe()
    }

    /// The drained `worker` was stopped; its slot starts a replacement next.
    pub(crate) fn worker_recycled(&mut self, worker: WorkerId, reason: RecycleReason) {
        let s = &mut self.slots[worker.slot];
        if s.generation != worker.generation {
            return;
        }
        let exit = WorkerExit::Recycled(reason);
        s.status = SlotStatus::Restarting(exit.clone());
        s.connection = None;
        s.previous_exit = Some(exit.clone());
        s.death.send_replace(Some(exit));
        self.notify();
    }

    /// A new process is starting in `slot`; returns its id.
    pub(crate) fn worker_starting(&mut self, slot: usize) -> WorkerId {
        let s = &mut self.slots[slot];
        if s.started {
            s.generation += 1;
        }
        s.started = true;
        s.status = SlotStatus::Starting;
        s.in_flight = 0;
        s.connection = None;
        s.death = watch::channel(None).0;
        s.served = 0;
        s.retiring = None;
        s.drained = watch::channel(None).0;
        let id = WorkerId {
            slot,
            generation: s.generation,
        };
        self.publish();
        id
    }

    /// The worker `worker` is ready to serve through `connection`.
    pub(crate) fn worker_ready(&mut self, worker: WorkerId, connection: Arc<C>) {
        let s = &mut self.slots[worker.slot];
        if s.generation != worker.generation {
            return;
        }
        s.status = SlotStatus::Ready;
        s.connection = Some(connection);
        self.dispatch();
        self.notify();
    }

    /// The worker `worker` is gone. Requests in flight on it are told through its death signal,
    /// sessions bound to it are marked lost, and waiters that can no longer be served fail.
    pub(crate) fn worker_down(&mut self, worker: WorkerId, exit: WorkerExit, restarting: bool) {
        let s = &mut self.slots[worker.slot];
        if s.generation != worker.generation {
            return;
        }
        s.status = if restarting {
            SlotStatus::Restarting(exit.clone())
        } else {
            SlotStatus::Stopped(exit.clone())
        };
        s.in_flight = 0;
        s.connection = None;
        s.previous_exit = Some(exit.clone());
        s.death.send_replace(Some(exit.clone()));
        for binding in self.sessions.values_mut() {
            if binding.worker == worker && binding.lost.is_none() {
                binding.lost = Some(exit.clone());
            }
        }
        let waiters = std::mem::take(&mut self.waiters);
        for waiter in waiters {
            match &waiter.target {
                Target::Worker { worker: w, session } if *w == worker => {
                    let _ = waiter.reply.send(Err(PoolError::SessionWorkerLost {
                        session: session.clone(),
                        worker,
                        exit: exit.clone(),
                    }));
                }
                _ => self.waiters.push_back(waiter),
            }
        }
        if self.closed.is_none()
            && self
                .slots
                .iter()
                .all(|s| matches!(s.status, SlotStatus::Stopped(_)))
        {
            self.close(PoolError::RestartLimitReached {
                max_restarts: self.max_restarts,
                within: self.restart_window,
                last_failure: exit.to_string(),
            });
        }
        self.notify();
    }

    /// Remembers the first failure of a worker to start, for `await_ready`.
    pub(crate) fn startup_failed(&mut self, worker: WorkerId, exit: WorkerExit) {
        if self.startup_failure.is_none() {
            self.startup_failure = Some(PoolError::StartupFailed { worker, exit });
        }
        self.notify();
    }

    /// Refuses all further requests with `error` and fails every waiter with it.
    pub(crate) fn close(&mut self, error: PoolError) {
        for waiter in self.waiters.drain(..) {
            let _ = waiter.reply.send(Err(error.clone()));
        }
        if self.closed.is_none() {
            self.closed = Some(error);
        }
        self.notify();
    }

    /// `Ok(true)` when every worker is ready, `Ok(false)` while some are still starting, `Err`
    /// if one failed to start or the pool closed.
    pub(crate) fn readiness(&self) -> Result<bool, PoolError> {
        if let Some(error) = &self.startup_failure {
            return Err(error.clone());
        }
        if let Some(error) = &self.closed {
            return Err(error.clone());
        }
        Ok(self
            .slots
            .iter()
            .all(|s| matches!(s.status, SlotStatus::Ready)))
    }

    /// Ends a session's binding. Returns whether it existed.
    pub(crate) fn end_session(&mut self, session: &str) -> bool {
        let Some(binding) = self.sessions.remove(session) else {
            return false;
        };
        if self.slots[binding.worker.slot].generation == binding.worker.generation {
            self.check_drained(binding.worker.slot);
        }
        true
    }

    /// The worker a session is bound to, if any (also when that worker is gone).
    pub(crate) fn session_worker(&self, session: &str) -> Option<WorkerId> {
        self.sessions.get(session).map(|b| b.worker)
    }

    /// The status of one slot.
    pub(crate) fn slot_status(&self, slot: usize) -> (WorkerId, SlotStatus, Option<WorkerExit>) {
        let s = &self.slots[slot];
        (
            WorkerId {
                slot,
                generation: s.generation,
            },
            s.status.clone(),
            s.previous_exit.clone(),
        )
    }

    /// Counts for [`PoolStats`]; the caller adds the cumulative counters.
    pub(crate) fn fill_stats(&self, stats: &mut PoolStats) {
        stats.size = self.slots.len();
        for s in &self.slots {
            match s.status {
                SlotStatus::Starting => stats.workers_starting += 1,
                SlotStatus::Ready if s.in_flight > 0 => {
                    stats.workers_ready += 1;
                    stats.workers_busy += 1;
                }
                SlotStatus::Ready => stats.workers_ready += 1,
                SlotStatus::Restarting(_) => stats.workers_restarting += 1,
                SlotStatus::Stopped(_) => stats.workers_stopped += 1,
            }
            if matches!(s.status, SlotStatus::Ready) && s.retiring.is_some() {
                stats.workers_retiring += 1;
            }
            stats.in_flight += s.in_flight;
        }
        stats.queue_len = self.waiters.len();
        stats.sessions = self.sessions.len();
    }
}
