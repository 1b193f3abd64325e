//! The seam between the pool and the layer above: how to start, connect to, check and stop a worker.

use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::path::PathBuf;

use tokio::process::{ChildStdin, ChildStdout};

use crate::error::WorkerId;

/// A boxed error from adapter code.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What the pool knows about the worker it is starting, handed to every adapter method that
/// concerns one worker.
#[derive(Debug, Clone)]
pub struct WorkerContext {
    /// Which worker this is.
    pub id: WorkerId,
    /// The pool run this worker belongs to (also in the worker's environment as `SNAKEPIT_RUN_ID`).
    pub run_id: String,
}

/// The program a worker runs, built by [`Adapter::command`].
///
/// The pool adds to it: the worker starts in a new session and process group, with a parent-death
/// signal on Linux, standard error captured (forwarded to `tracing` and kept for error messages),
/// and `SNAKEPIT_RUN_ID`, `SNAKEPIT_WORKER_SLOT` and `SNAKEPIT_OWNER_PID` in its environment.
///
/// ```
/// use snakepit::WorkerCommand;
/// let command = WorkerCommand::new("python3")
///     .args(["-m", "my_worker"])
///     .env("MY_SETTING", "1")
///     .piped_stdin()
///     .piped_stdout();
/// assert_eq!(command.program(), "python3");
/// ```
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) current_dir: Option<PathBuf>,
    pub(crate) stdin: bool,
    pub(crate) stdout: bool,
}

impl WorkerCommand {
    /// A command that runs `program` (looked up in `PATH` if it has no slash).
    pub fn new(program: impl Into<OsString>) -> Self {
        WorkerCommand {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
            stdin: false,
            stdout: false,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable (the rest of the environment is inherited).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs the program in `dir`.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Connects the worker's standard input to a pipe that [`StartedWorker::take_stdin`] returns.
    /// Without it, standard input is `/dev/null`.
    pub fn piped_stdin(mut self) -> Self {
        self.stdin = true;
        self
    }

    /// Connects the worker's standard output to a pipe that [`StartedWorker::take_stdout`] returns.
    /// Without it, standard output is forwarded to `tracing` like standard error.
    pub fn piped_stdout(mut self) -> Self {
        self.stdout = true;
        self
    }

    /// The program to run.
    pub fn program(&self) -> &OsStr {
        &self.program
    }
}

/// A worker process that has been spawned but is not ready yet; handed to [`Adapter::connect`].
#[derive(Debug)]
pub struct StartedWorker {
    pub(crate) pid: u32,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) stdout: Option<ChildStdout>,
}

impl StartedWorker {
    /// The process id (also the id of its process group).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The worker's standard input, if the command asked for [`WorkerCommand::piped_stdin`].
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// The worker's standard output, if the command asked for [`WorkerCommand::piped_stdout`].
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }
}

/// How to run one kind of worker. The pool's only seam to the layer above.
///
/// The pool spawns the [`command`](Adapter::command), then awaits [`connect`](Adapter::connect)
/// (raced against the process exiting and the startup timeout) to get a ready `Connection`, which
/// it hands to requests. It calls [`health_check`](Adapter::health_check) periodically and
/// [`stop`](Adapter::stop) before signalling the process at shutdown.
///
/// If a connection notices that its worker is gone before the pool does, it may return its own
/// error or simply stay pending: the pool resolves every request in flight on a worker with
/// [`PoolError::WorkerCrashed`](crate::PoolError::WorkerCrashed) as soon as it sees the exit.
pub trait Adapter: Send + Sync + 'static {
    /// A ready connection to one worker, shared by all requests in flight on it.
    type Connection: Send + Sync + 'static;

    /// The program to run as worker `ctx.id`.
    fn command(&self, ctx: &WorkerContext) -> Result<WorkerCommand, BoxError>;

    /// Turns a freshly spawned process into a ready connection, e.g. by waiting for a readiness
    /// line or a successful first request.
    fn connect(
        &self,
        ctx: &WorkerContext,
        process: &mut StartedWorker,
    ) -> impl Future<Output = Result<Self::Connection, BoxError>> + Send;

    /// Checks that a ready worker still answers. The default reports healthy.
    fn health_check(
        &self,
        connection: &Self::Connection,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = connection;
        async { Ok(()) }
    }

    /// The worker's resident memory in bytes, which [`PoolConfig::max_memory`] is checked
    /// against; `None` when it cannot be read. The default reads that of `pid`, the process the
    /// pool started ([`resident_bytes`](crate::resident_bytes)); an adapter whose worker is
    /// another process (forked by a server, or on another machine) reads that one's.
    ///
    /// [`PoolConfig::max_memory`]: crate::PoolConfig::max_memory
    fn resident_bytes(
        &self,
        connection: &Self::Connection,
        pid: u32,
    ) -> impl Future<Output = Option<u64>> + Send {
        let _ = connection;
        async move { crate::recycle::resident_bytes(pid) }
    }

    /// Asks a worker to stop gracefully. The pool then waits for the process to exit, sends
    /// `SIGTERM` to its process group, and after the grace period `SIGKILL`. The default does
    /// nothing, leaving `SIGTERM` as the polite request.
    fn stop(
        &self,
        connection: &Self::Connection,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = connection;
        async { Ok(()) }
    }
}
