//! # snakepit
//!
//! A supervised, async pool of OS worker processes: start them concurrently, hand out their
//! connections under a per-worker in-flight limit with a bounded wait queue, keep sessions on one
//! worker, replace workers that crash or hang (with backoff and a restart-intensity limit), and
//! never leave a process behind, not even when the owning program is killed with `SIGKILL`.
//!
//! It knows nothing of what the workers run or the protocol they speak. The layer above plugs in
//! through the [`Adapter`] trait: the command for worker N, how a spawned process becomes a ready
//! `Connection`, how to check its health, and how to stop it politely.
//!
//! ```no_run
//! use snakepit::{Adapter, BoxError, Pool, PoolConfig, StartedWorker, WorkerCommand, WorkerContext};
//! use tokio::io::{AsyncBufReadExt, BufReader};
//!
//! /// Workers that print one line when ready, then serve requests (protocol not shown).
//! struct MyWorkers;
//!
//! impl Adapter for MyWorkers {
//!     type Connection = u32; // here just the pid; a real adapter holds a client
//!
//!     fn command(&self, _ctx: &WorkerContext) -> Result<WorkerCommand, BoxError> {
//!         Ok(WorkerCommand::new("my-worker").piped_stdout())
//!     }
//!
//!     async fn connect(&self, _ctx: &WorkerContext, process: &mut StartedWorker) -> Result<u32, BoxError> {
//!         let stdout = process.take_stdout().ok_or("no stdout")?;
//!         let mut ready = String::new();
//!         BufReader::new(stdout).read_line(&mut ready).await?;
//!         Ok(process.pid())
//!     }
//! }
//!
//! # async fn demo() -> Result<(), snakepit::PoolError> {
//! let pool = Pool::start(MyWorkers, PoolConfig::builder().size(4).build()?).await?;
//! let pid = pool.execute(|pid| async move { *pid }).await?;
//! println!("served by {pid}; {:?}", pool.stats());
//! pool.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! ## Processes are never orphaned
//! Each worker leads its own session and process group, and on Linux gets `SIGKILL` when its owner
//! dies. Each pool run records itself in a registry file under a per-user runtime directory; a pool
//! that starts kills the process groups of earlier runs whose owner is dead, and never touches the
//! workers of a live owner. [`Pool::shutdown`] and dropping the last [`Pool`] stop the workers
//! gracefully, then with `SIGKILL` after the grace period.

mod adapter;
mod breaker;
mod config;
mod dispatch;
mod error;
mod pool;
mod process;
mod recycle;
pub mod registry;
mod retry;
mod session;
mod stats;
mod supervisor;
pub mod telemetry;
mod worker;

pub use adapter::{Adapter, BoxError, StartedWorker, WorkerCommand, WorkerContext};
pub use breaker::{CircuitBreakerConfig, CircuitState};
pub use config::{PoolConfig, PoolConfigBuilder};
pub use error::{PoolError, Result, StartFailure, WorkerExit, WorkerId};
pub use pool::{Checkout, Pool, WorkerInfo};
pub use process::{OWNER_PID_ENV, RUN_ID_ENV, WORKER_SLOT_ENV, processes_of_run};
pub use recycle::{RecycleReason, resident_bytes};
pub use registry::new_run_id;
pub use retry::RetryPolicy;
pub use session::Affinity;
pub use stats::PoolStats;
