//! The pool: the public handle, checkouts, and shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::adapter::Adapter;
use crate::breaker::{Admission, Breaker, CircuitState};
use crate::config::PoolConfig;
use crate::dispatch::{Acquired, Dispatcher, Lease, SlotStatus, lock};
use crate::error::{PoolError, Result, WorkerExit, WorkerId};
use crate::process;
use crate::registry::{self, RunRegistry};
use crate::session::Affinity;
use crate::stats::{Counters, PoolStats};
use crate::supervisor::{self, RestartIntensity};
use crate::telemetry::PoolMetrics;

/// What the pool's handles and its background tasks share.
pub(crate) struct Shared<A: Adapter> {
    pub(crate) adapter: A,
    pub(crate) config: PoolConfig,
    pub(crate) run_id: String,
    pub(crate) dispatcher: Arc<Mutex<Dispatcher<A::Connection>>>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) metrics: Arc<PoolMetrics>,
    pub(crate) registry: RunRegistry,
    pub(crate) intensity: Mutex<RestartIntensity>,
    pub(crate) breaker: Option<Arc<Mutex<Breaker>>>,
    pub(crate) shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl<A: Adapter> Drop for Shared<A> {
    /// The last line of defence, reached when the runtime dropped the supervisor tasks without a
    /// shutdown: kill every recorded worker group and leave no registry entry behind.
    fn drop(&mut self) {
        for pgid in self.registry.worker_groups().into_values() {
            process::signal_group_of_run(pgid, &self.run_id, libc::SIGKILL);
        }
        self.registry.close();
    }
}

/// Shuts the pool down when the last [`Pool`] handle is dropped.
struct OwnerGuard<A: Adapter> {
    shared: Arc<Shared<A>>,
}

impl<A: Adapter> Drop for OwnerGuard<A> {
    fn drop(&mut self) {
        // The supervisor tasks see this and stop their workers gracefully if the runtime lives on;
        // if it does not, dropping `Shared` kills the groups.
        self.shared.shutdown.send_replace(true);
        lock(&self.shared.dispatcher).close(PoolError::ShuttingDown);
    }
}

/// A supervised pool of worker processes, started and spoken to through an [`Adapter`].
///
/// `Pool` is a cheap [`Clone`] handle. When the last handle is dropped the workers are stopped
/// (gracefully while the Tokio runtime runs, else with `SIGKILL`); [`Pool::shutdown`] does the same
/// and waits for it.
///
/// ```no_run
/// # use snakepit::{Adapter, BoxError, Pool, PoolConfig, StartedWorker, WorkerCommand, WorkerContext};
/// # struct Echo;
/// # impl Adapter for Echo {
/// #     type Connection = ();
/// #     fn command(&self, _: &WorkerContext) -> Result<WorkerCommand, BoxError> { Ok(WorkerCommand::new("cat")) }
/// #     async fn connect(&self, _: &WorkerContext, _: &mut StartedWorker) -> Result<(), BoxError> { Ok(()) }
/// # }
/// # async fn demo() -> Result<(), snakepit::PoolError> {
/// let pool = Pool::start(Echo, PoolConfig::builder().size(4).build()?).await?;
/// let answer = pool.execute(|connection| async move { /* talk to the worker */ 42 }).await?;
/// assert_eq!(answer, 42);
/// pool.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct Pool<A: Adapter> {
    shared: Arc<Shared<A>>,
    _owner: Arc<OwnerGuard<A>>,
}

impl<A: Adapter> Clone for Pool<A> {
    fn clone(&self) -> Self {
        Pool {
            shared: self.shared.clone(),
            _owner: self._owner.clone(),
        }
    }
}

impl<A: Adapter> std::fmt::Debug for Pool<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("run_id", &self.shared.run_id)
            .field("stats", &self.stats())
            .finish()
    }
}

/// One worker's state, from [`Pool::workers`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// The worker's id.
    pub id: WorkerId,
    /// Its process id while it has a process.
    pub pid: Option<u32>,
    /// Whether it is ready to serve.
    pub ready: bool,
    /// Why its last process stopped, while it is waiting for a replacement or stopped for good.
    pub last_exit: Option<WorkerExit>,
    /// Why the slot's previous process stopped, kept after its replacement is ready (`None` if
    /// the slot never lost a process): what an operator asks after a restart.
    pub previous_exit: Option<WorkerExit>,
}

impl<A: Adapter> Pool<A> {
    /// Starts every worker concurrently and waits until all are ready.
    ///
    /// Fails with [`PoolError::StartupFailed`] as soon as one worker fails to start (the error
    /// carries the tail of its standard error); the other workers are then stopped.
    pub async fn start(adapter: A, config: PoolConfig) -> Result<Self> {
        let pool = Self::spawn(adapter, config)?;
        match pool.await_ready().await {
            Ok(()) => Ok(pool),
            Err(e) => {
                let _ = pool.shutdown().await;
                Err(e)
            }
        }
    }

    /// Starts every worker concurrently and returns at once; see [`Pool::await_ready`].
    ///
    /// First kills the workers of earlier runs in the same runtime directory whose owner is dead.
    /// Must be called within a Tokio runtime.
    pub fn spawn(adapter: A, config: PoolConfig) -> Result<Self> {
        config.validate()?;
        let run_id = config.run_id.clone().unwrap_or_else(registry::new_run_id);
        let runtime_dir = config
            .runtime_dir
            .clone()
            .unwrap_or_else(registry::default_runtime_dir);
        let registry = RunRegistry::open(&runtime_dir, &run_id)?;
        let metrics = Arc::new(PoolMetrics::new());
        let shared = Arc::new(Shared {
            dispatcher: Dispatcher::new(&config, metrics.clone()),
            counters: Arc::new(Counters::default()),
            metrics,
            intensity: Mutex::new(RestartIntensity::new(&config)),
            breaker: config
                .circuit_breaker
                .map(|c| Arc::new(Mutex::new(Breaker::new(c)))),
            shutdown: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
            adapter,
            config,
            run_id,
            registry,
        });
        tracing::info!(run_id = %shared.run_id, size = shared.config.size, "starting pool");
        let tasks = (0..shared.config.size)
            .map(|slot| tokio::spawn(supervisor::supervise_slot(shared.clone(), slot)))
            .collect();
        *shared.tasks.lock().expect("tasks lock") = tasks;
        Ok(Pool {
            _owner: Arc::new(OwnerGuard {
                shared: shared.clone(),
            }),
            shared,
        })
    }

    /// Waits until every worker is ready. Fails if a worker failed its first start, or the pool
    /// was shut down or gave up restarting.
    pub async fn await_ready(&self) -> Result<()> {
        let mut changed = lock(&self.shared.dispatcher).subscribe();
        loop {
            if lock(&self.shared.dispatcher).readiness()? {
                return Ok(());
            }
            if changed.changed().await.is_err() {
                return Err(PoolError::ShuttingDown);
            }
        }
    }

    /// Runs `work` with the connection of the least-loaded worker that has capacity, waiting in
    /// the queue if none has.
    ///
    /// The result is `Err` only for the pool's own failures: queue full or timed out, request
    /// timed out, or the worker died while `work` ran ([`PoolError::WorkerCrashed`], at once).
    pub async fn execute<F, Fut, T>(&self, work: F) -> Result<T>
    where
        F: FnOnce(Arc<A::Connection>) -> Fut,
        Fut: Future<Output = T>,
    {
        let checkout = self.checkout().await?;
        checkout.run(work(checkout.connection_arc())).await
    }

    /// Like [`execute`](Pool::execute), but keeps all requests of `session` on one worker; see
    /// [`Affinity`].
    pub async fn execute_in_session<F, Fut, T>(
        &self,
        session: &str,
        affinity: Affinity,
        work: F,
    ) -> Result<T>
    where
        F: FnOnce(Arc<A::Connection>) -> Fut,
        Fut: Future<Output = T>,
    {
        let checkout = self.checkout_in_session(session, affinity).await?;
        checkout.run(work(checkout.connection_arc())).await
    }

    /// Reserves capacity on the least-loaded worker until the returned guard is dropped.
    pub async fn checkout(&self) -> Result<Checkout<A>> {
        self.acquire(None).await
    }

    /// Reserves capacity on the worker of `session` (binding it on first use).
    pub async fn checkout_in_session(
        &self,
        session: &str,
        affinity: Affinity,
    ) -> Result<Checkout<A>> {
        self.acquire(Some((session, affinity))).await
    }

    async fn acquire(&self, session: Option<(&str, Affinity)>) -> Result<Checkout<A>> {
        let counters = &self.shared.counters;
        let metrics = &self.shared.metrics;
        let failed = |e: &PoolError| {
            Counters::bump(&counters.errors);
            metrics.error(e);
        };
        let asked = Instant::now();
        // Admitted before queueing, so a probe that never reaches a worker hands the probe on.
        let admission = match &self.shared.breaker {
            Some(breaker) => {
                let mut guard = lock_breaker(breaker);
                let admitted = guard.admit(asked);
                metrics.circuit(guard.state(asked));
                drop(guard);
                match admitted {
                    Ok(admission) => Some(Admitted {
                        breaker: breaker.clone(),
                        admission,
                        outcome: AtomicU8::new(OUTCOME_NONE),
                        metrics: metrics.clone(),
                    }),
                    Err(e) => {
                        failed(&e);
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        let acquired = lock(&self.shared.dispatcher).acquire(session);
        let lease = match acquired {
            Ok(Acquired::Now(lease)) => lease,
            Ok(Acquired::Queued { id, receiver }) => {
                let mut waiting = QueuedRequest {
                    dispatcher: &self.shared.dispatcher,
                    id,
                    receiver,
                    done: false,
                };
                let result = waiting.wait(self.shared.config.queue_timeout).await;
                waiting.done = true;
                result.inspect_err(failed)?
            }
            Err(e) => {
                failed(&e);
                return Err(e);
            }
        };
        Counters::bump(&counters.requests);
        metrics.requests.increment(1);
        metrics.queue_wait.record(asked.elapsed());
        Ok(Checkout {
            lease,
            request_timeout: self.shared.config.request_timeout,
            counters: counters.clone(),
            metrics: metrics.clone(),
            admitted: admission,
        })
    }

    /// Forgets the worker binding of `session`. Returns whether the session was bound.
    pub fn end_session(&self, session: &str) -> bool {
        lock(&self.shared.dispatcher).end_session(session)
    }

    /// The worker `session` is bound to, if it is bound (also when that worker has died).
    pub fn session_worker(&self, session: &str) -> Option<WorkerId> {
        lock(&self.shared.dispatcher).session_worker(session)
    }

    /// A snapshot of the pool's workers, queue and counters.
    pub fn stats(&self) -> PoolStats {
        let mut stats = PoolStats::default();
        lock(&self.shared.dispatcher).fill_stats(&mut stats);
        self.shared.counters.fill(&mut stats);
        stats
    }

    /// Every worker slot with its current process.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        let pids: BTreeMap<usize, u32> = self.shared.registry.worker_groups();
        let dispatcher = lock(&self.shared.dispatcher);
        (0..self.shared.config.size)
            .map(|slot| {
                let (id, status, previous_exit) = dispatcher.slot_status(slot);
                WorkerInfo {
                    id,
                    pid: pids.get(&slot).copied(),
                    ready: matches!(status, SlotStatus::Ready),
                    last_exit: match status {
                        SlotStatus::Restarting(exit) | SlotStatus::Stopped(exit) => Some(exit),
                        SlotStatus::Starting | SlotStatus::Ready => None,
                    },
                    previous_exit,
                }
            })
            .collect()
    }

    /// Where the circuit breaker stands; `None` when the pool has none
    /// ([`PoolConfig::circuit_breaker`]).
    pub fn circuit_state(&self) -> Option<CircuitState> {
        self.shared
            .breaker
            .as_ref()
            .map(|b| lock_breaker(b).state(Instant::now()))
    }

    /// This pool run's id, also in every worker's environment as `SNAKEPIT_RUN_ID`.
    pub fn run_id(&self) -> &str {
        &self.shared.run_id
    }

    /// The configuration the pool runs with.
    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }

    /// The adapter the pool runs workers with.
    pub fn adapter(&self) -> &A {
        &self.shared.adapter
    }

    /// This run's file in the process registry.
    pub fn registry_file(&self) -> &Path {
        self.shared.registry.file()
    }

    /// The runtime directory that holds the process registry.
    pub fn runtime_dir(&self) -> PathBuf {
        self.shared
            .config
            .runtime_dir
            .clone()
            .unwrap_or_else(registry::default_runtime_dir)
    }

    /// Stops every worker (the adapter's stop, `SIGTERM`, then `SIGKILL` after the grace period),
    /// fails waiting requests with [`PoolError::ShuttingDown`], reaps every process and removes
    /// the run from the registry. Safe to call more than once.
    pub async fn shutdown(&self) -> Result<()> {
        let started = Instant::now();
        self.shared.shutdown.send_replace(true);
        lock(&self.shared.dispatcher).close(PoolError::ShuttingDown);
        let tasks = std::mem::take(&mut *self.shared.tasks.lock().expect("tasks lock"));
        for task in tasks {
            if let Err(e) = task.await
                && e.is_panic()
            {
                tracing::error!(run_id = %self.shared.run_id, "a supervisor task panicked");
            }
        }
        for pgid in self.shared.registry.worker_groups().into_values() {
            process::signal_group_of_run(pgid, &self.shared.run_id, libc::SIGKILL);
        }
        self.shared.registry.close();
        tracing::info!(run_id = %self.shared.run_id, elapsed_ms = started.elapsed().as_millis() as u64, "pool shut down");
        Ok(())
    }
}

/// A request waiting in the queue; leaves the queue if it is dropped or times out.
struct QueuedRequest<'a, C> {
    dispatcher: &'a Mutex<Dispatcher<C>>,
    id: u64,
    receiver: tokio::sync::oneshot::Receiver<Result<Lease<C>>>,
    done: bool,
}

impl<C> QueuedRequest<'_, C> {
    async fn wait(&mut self, queue_timeout: Duration) -> Result<Lease<C>> {
        match tokio::time::timeout(queue_timeout, &mut self.receiver).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(PoolError::ShuttingDown),
            Err(_) => {
                if lock(self.dispatcher).cancel(self.id) {
                    return Err(PoolError::QueueTimeout {
                        waited: queue_timeout,
                    });
                }
                // Served in the same instant the timeout fired: take what was sent.
                match self.receiver.try_recv() {
                    Ok(result) => result,
                    Err(_) => Err(PoolError::QueueTimeout {
                        waited: queue_timeout,
                    }),
                }
            }
        }
    }
}

impl<C> Drop for QueuedRequest<'_, C> {
    fn drop(&mut self) {
        if !self.done {
            lock(self.dispatcher).cancel(self.id);
        }
    }
}

/// Capacity reserved on one worker; dropping it frees the capacity.
///
/// Use [`run`](Checkout::run) to await work on the worker: it resolves at once with
/// [`PoolError::WorkerCrashed`] if the worker dies, and enforces the request timeout.
pub struct Checkout<A: Adapter> {
    lease: Lease<A::Connection>,
    request_timeout: Option<Duration>,
    counters: Arc<Counters>,
    metrics: Arc<PoolMetrics>,
    admitted: Option<Admitted>,
}

const OUTCOME_NONE: u8 = 0;
const OUTCOME_OK: u8 = 1;
const OUTCOME_FAILED: u8 = 2;

/// A request the circuit breaker let through; reports its outcome when dropped.
struct Admitted {
    breaker: Arc<Mutex<Breaker>>,
    admission: Admission,
    outcome: AtomicU8,
    metrics: Arc<PoolMetrics>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let outcome = match self.outcome.load(Ordering::Acquire) {
            OUTCOME_OK => Some(true),
            OUTCOME_FAILED => Some(false),
            _ => None,
        };
        let now = Instant::now();
        let mut breaker = lock_breaker(&self.breaker);
        breaker.record(self.admission, outcome, now);
        self.metrics.circuit(breaker.state(now));
    }
}

impl<A: Adapter> std::fmt::Debug for Checkout<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout")
            .field("worker", &self.lease.worker)
            .finish()
    }
}

impl<A: Adapter> Checkout<A> {
    /// The worker this checkout is on.
    pub fn worker(&self) -> WorkerId {
        self.lease.worker
    }

    /// The worker's connection.
    pub fn connection(&self) -> &A::Connection {
        &self.lease.connection
    }

    /// The worker's connection, as a shared pointer that can move into a task.
    pub fn connection_arc(&self) -> Arc<A::Connection> {
        self.lease.connection.clone()
    }

    /// Why the worker stopped, if it has.
    pub fn exit(&self) -> Option<WorkerExit> {
        self.lease.death.borrow().clone()
    }

    /// Waits up to `within` for the worker to be seen dead; for adapters that got an I/O error and
    /// want to know whether the worker crashed.
    pub async fn exit_within(&self, within: Duration) -> Option<WorkerExit> {
        let mut death = self.lease.death.clone();
        tokio::time::timeout(within, death.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|r| r.ok().map(|e| e.clone()))
            .flatten()
    }

    /// Replaces the pool's request timeout for work run through this checkout (`None`: no
    /// timeout, for long work such as an optimiser's run; the worker's death still ends it).
    pub fn set_request_timeout(&mut self, timeout: Option<Duration>) {
        self.request_timeout = timeout;
    }

    /// Marks the request as failed for the circuit breaker, although the pool saw it succeed
    /// (the worker answered with an error that means a broken dependency). Without a breaker it
    /// does nothing.
    pub fn mark_failed(&self) {
        if let Some(admitted) = &self.admitted {
            admitted.outcome.store(OUTCOME_FAILED, Ordering::Release);
        }
    }

    /// Awaits `work`, racing it against the worker's death only: for the parts of one long
    /// request (the messages of a stream), which [`run`](Checkout::run) would time and count one
    /// by one. Counts nothing and applies no timeout.
    pub async fn watch<Fut: Future>(&self, work: Fut) -> Result<Fut::Output> {
        let worker = self.lease.worker;
        let mut death = self.lease.death.clone();
        tokio::select! {
            biased;
            output = work => Ok(output),
            exit = death.wait_for(Option::is_some) => {
                let exit = exit.ok().and_then(|e| e.clone()).unwrap_or(WorkerExit::Stopped);
                Err(PoolError::WorkerCrashed { worker, exit })
            }
        }
    }

    /// Awaits `work`, racing it against the worker's death and the request timeout.
    ///
    /// For the circuit breaker, a pool error counts as a failure and anything else as a success
    /// unless [`mark_failed`](Checkout::mark_failed) says otherwise.
    pub async fn run<Fut: Future>(&self, work: Fut) -> Result<Fut::Output> {
        let worker = self.lease.worker;
        let started = Instant::now();
        let mut death = self.lease.death.clone();
        let timed = async {
            match self.request_timeout {
                Some(after) => tokio::time::timeout(after, work)
                    .await
                    .map_err(|_| PoolError::RequestTimeout { worker, after }),
                None => Ok(work.await),
            }
        };
        let result = tokio::select! {
            biased;
            result = timed => result,
            exit = death.wait_for(Option::is_some) => {
                let exit = exit.ok().and_then(|e| e.clone()).unwrap_or(WorkerExit::Stopped);
                Err(PoolError::WorkerCrashed { worker, exit })
            }
        };
        self.metrics.request_duration.record(started.elapsed());
        if let Err(e) = &result {
            Counters::bump(&self.counters.errors);
            self.metrics.error(e);
        }
        if let Some(admitted) = &self.admitted {
            let outcome = if result.is_err() {
                OUTCOME_FAILED
            } else {
                OUTCOME_OK
            };
            // A failure, once recorded, stays: compare_exchange only fills an empty outcome.
            let _ = admitted.outcome.compare_exchange(
                OUTCOME_NONE,
                outcome,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        result
    }
}

fn lock_breaker(breaker: &Mutex<Breaker>) -> std::sync::MutexGuard<'_, Breaker> {
    breaker.lock().unwrap_or_else(|p| p.into_inner())
}
