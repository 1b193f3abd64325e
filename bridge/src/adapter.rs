//! `GrpcPythonAdapter`: how snakepit starts a Python worker and gets a gRPC client to it.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use snakepit::{Adapter, BoxError, StartedWorker, WorkerCommand, WorkerContext, WorkerId};
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::environment::PythonEnvironment;
use crate::proto::bridge_service_client::BridgeServiceClient;
use crate::proto::{PingRequest, PingResponse};

/// The line a worker prints on standard output once it can serve.
const READY_PREFIX: &str = "SNAKEPIT_READY ";

/// How Rust and the workers talk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Transport {
    /// A Unix domain socket inside a private (0700) directory. The default.
    #[default]
    UnixSocket,
    /// TCP on 127.0.0.1 with a port the worker picks. Only when asked.
    TcpLoopback,
}

/// Socket directories are named `dspex-<owner pid>-<random>`.
const SOCKET_DIR_PREFIX: &str = "dspex-";

/// Removes the socket directories of processes that are gone (a program killed before it could
/// clean up after itself leaves its directory behind).
fn remove_stale_socket_dirs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SOCKET_DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let owned_by_us = entry
            .metadata()
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == current_uid())
            .unwrap_or(false);
        if owned_by_us && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn current_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(u32::MAX)
}

/// A ready worker: its gRPC client and identity.
#[derive(Debug, Clone)]
pub struct WorkerConnection {
    pub(crate) client: BridgeServiceClient<Channel>,
    pub(crate) fast: Option<std::sync::Arc<crate::fast::FastConnection>>,
    pub(crate) info: PingResponse,
    pub(crate) address: String,
}

impl WorkerConnection {
    /// The address the worker serves on: `unix:/path` or `tcp:127.0.0.1:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The worker's process id.
    pub fn pid(&self) -> u32 {
        self.info.pid
    }

    /// The worker's Python version.
    pub fn python_version(&self) -> &str {
        &self.info.python_version
    }
}

/// A pre-warmed Python process that has imported DSPy and gRPC and forks workers on request.
#[derive(Debug)]
struct ForkServer {
    control: PathBuf,
    // Killed at shutdown or when the adapter (and so the pool) goes; its workers die with it.
    process: std::sync::Mutex<Option<tokio::process::Child>>,
}

/// Starts `python -m snakepit_bridge.server` workers and connects to them over gRPC.
#[derive(Debug)]
pub struct GrpcPythonAdapter {
    fork_server: Option<ForkServer>,
    environment: PythonEnvironment,
    python_path: OsString,
    imports: Vec<String>,
    transport: Transport,
    env: Vec<(String, String)>,
    call_timeout: Duration,
    socket_dir: tempfile::TempDir,
    run_id: Option<String>,
}

impl GrpcPythonAdapter {
    /// An adapter for workers run by `environment`, importing `imports` at start (modules found on
    /// the package path or in `python_path`).
    pub fn new(
        environment: PythonEnvironment,
        imports: Vec<String>,
        python_path: &[PathBuf],
        transport: Transport,
        env: Vec<(String, String)>,
    ) -> std::io::Result<Self> {
        // Short, private, and ours: Unix socket paths are limited to about 100 bytes.
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        remove_stale_socket_dirs(&base);
        let socket_dir = tempfile::Builder::new()
            .prefix(&format!("{SOCKET_DIR_PREFIX}{}-", std::process::id()))
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(base)?;
        Ok(GrpcPythonAdapter {
            fork_server: None,
            python_path: environment.python_path(python_path),
            environment,
            imports,
            transport,
            env,
            call_timeout: Duration::from_secs(10),
            socket_dir,
            run_id: None,
        })
    }

    /// Marks the fork server with the pool's run id (`SNAKEPIT_RUN_ID`), as the pool marks its
    /// workers, so that orphan cleanup and tests find every process of a run. Pass the run id the
    /// pool is configured with ([`snakepit::PoolConfig::run_id`]).
    pub fn with_run_id(mut self, run_id: &str) -> Self {
        self.run_id = Some(run_id.to_owned());
        self
    }

    /// Writes `contents` to `file_name` in the private directory (mode 0600) and tells every worker
    /// its path in the environment variable `variable`: settings too large for the environment,
    /// or that should not show in it.
    pub fn set_worker_file(
        &mut self,
        variable: &str,
        file_name: &str,
        contents: &[u8],
    ) -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = self.socket_dir.path().join(file_name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(contents)?;
        self.env.retain(|(k, _)| k != variable);
        self.env
            .push((variable.to_owned(), path.to_string_lossy().into_owned()));
        Ok(())
    }

    /// Starts a fork server: one Python process imports DSPy and gRPC once, and every worker is
    /// forked from it (tens of milliseconds instead of a cold interpreter, and shared pages). The
    /// pool then supervises a small shim per worker that lives and dies with it.
    pub async fn start_fork_server(&mut self, timeout: Duration) -> Result<(), BoxError> {
        let control = self.socket_dir.path().join("fork.sock");
        let mut command = tokio::process::Command::new(self.environment.python());
        command
            .args(["-m", "snakepit_bridge.forkserver", "--control"])
            .arg(&control)
            .env("PYTHONPATH", &self.python_path)
            .env("PYTHONUNBUFFERED", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(self.run_id.iter().map(|id| (snakepit::RUN_ID_ENV, id)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut process = command.spawn()?;
        let stdout = process.stdout.take().ok_or("no stdout")?;
        let stderr = process.stderr.take().ok_or("no stderr")?;
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "snakepit::worker_output", stream = "forkserver", "{line}");
            }
        });
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(timeout, async {
            while let Some(line) = lines.next_line().await? {
                if line.trim() == "FORKSERVER_READY" {
                    return Ok::<bool, std::io::Error>(true);
                }
            }
            Ok(false)
        })
        .await;
        match ready {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return Err("the fork server exited before it was ready".into()),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                return Err(format!("the fork server was not ready within {timeout:?}").into());
            }
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.fork_server = Some(ForkServer {
            control,
            process: std::sync::Mutex::new(Some(process)),
        });
        Ok(())
    }

    /// Stops the fork server (its remaining workers die with it). Called at shutdown.
    pub fn stop_fork_server(&self) {
        if let Some(fork) = &self.fork_server {
            let process = fork
                .process
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(mut process) = process {
                let _ = process.start_kill();
                tokio::spawn(async move {
                    let _ = process.wait().await;
                });
            }
        }
    }

    /// Whether workers are forked from a fork server.
    pub fn uses_fork_server(&self) -> bool {
        self.fork_server.is_some()
    }

    /// The private directory holding the workers' sockets.
    pub fn socket_dir(&self) -> &Path {
        self.socket_dir.path()
    }

    /// The transport the workers use.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    fn socket_path(&self, id: WorkerId) -> PathBuf {
        self.socket_dir
            .path()
            .join(format!("w{}-{}.sock", id.slot, id.generation))
    }
}

async fn channel_for(address: &str) -> Result<Channel, BoxError> {
    if let Some(path) = address.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        // The URI is not used for a connector-based channel, but must parse.
        let channel = Endpoint::try_from("http://[::1]:50051")?
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await?;
        Ok(channel)
    } else if let Some(host_port) = address.strip_prefix("tcp:") {
        Ok(Endpoint::try_from(format!("http://{host_port}"))?
            .tcp_nodelay(true)
            .connect()
            .await?)
    } else {
        Err(format!("the worker announced an unknown address {address:?}").into())
    }
}

impl Adapter for GrpcPythonAdapter {
    type Connection = WorkerConnection;

    fn command(&self, ctx: &WorkerContext) -> Result<WorkerCommand, BoxError> {
        let command = WorkerCommand::new(self.environment.python());
        let command = match &self.fork_server {
            Some(fork) => command
                .arg("-S")
                .arg(
                    self.environment
                        .package_root()
                        .join("snakepit_bridge")
                        .join("forkshim.py"),
                )
                .arg(&fork.control)
                .arg("--"),
            None => command.args(["-m", "snakepit_bridge.server"]),
        };
        let mut command = command
            .args(["--run-id", &ctx.run_id])
            .arg("--worker-id")
            .arg(format!("{}.{}", ctx.id.slot, ctx.id.generation))
            .env("PYTHONPATH", &self.python_path)
            .env("PYTHONUNBUFFERED", "1")
            .piped_stdout();
        command = match self.transport {
            Transport::UnixSocket => {
                let socket = self.socket_path(ctx.id);
                let fast = socket.with_extension("fast");
                let _ = std::fs::remove_file(&socket);
                let _ = std::fs::remove_file(&fast);
                command
                    .arg("--socket")
                    .arg(socket)
                    .arg("--fast-socket")
                    .arg(fast)
            }
            Transport::TcpLoopback => command.args(["--port", "0"]),
        };
        for module in &self.imports {
            command = command.args(["--import", module]);
        }
        for (key, value) in &self.env {
            command = command.env(key, value);
        }
        Ok(command)
    }

    async fn connect(
        &self,
        ctx: &WorkerContext,
        process: &mut StartedWorker,
    ) -> Result<WorkerConnection, BoxError> {
        let stdout = process
            .take_stdout()
            .ok_or("the worker's stdout was not piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            match lines.next_line().await? {
                Some(line) => match line.strip_prefix(READY_PREFIX) {
                    Some(address) => break address.trim().to_owned(),
                    None => {
                        tracing::info!(target: "snakepit::worker_output", slot = ctx.id.slot, "{line}")
                    }
                },
                None => return Err("the worker exited before it was ready".into()),
            }
        };
        // Keep draining stdout so that a worker that prints never blocks on a full pipe.
        let slot = ctx.id.slot;
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::info!(target: "snakepit::worker_output", slot, stream = "stdout", "{line}");
            }
        });
        let channel = channel_for(&address).await?;
        let mut client = BridgeServiceClient::new(channel)
            .max_decoding_message_size(256 * 1024 * 1024)
            .max_encoding_message_size(256 * 1024 * 1024);
        let info = tokio::time::timeout(self.call_timeout, client.ping(PingRequest {}))
            .await
            .map_err(|_| "the worker did not answer its first ping")??
            .into_inner();
        if info.run_id != ctx.run_id {
            return Err(format!(
                "the worker at {address} belongs to run {:?}, not {:?}",
                info.run_id, ctx.run_id
            )
            .into());
        }
        let fast = match self.transport {
            Transport::UnixSocket => Some(std::sync::Arc::new(
                crate::fast::FastConnection::connect(
                    &self.socket_path(ctx.id).with_extension("fast"),
                )
                .await?,
            )),
            Transport::TcpLoopback => None,
        };
        Ok(WorkerConnection {
            client,
            fast,
            info,
            address,
        })
    }

    async fn health_check(&self, connection: &WorkerConnection) -> Result<(), BoxError> {
        let mut client = connection.client.clone();
        client.ping(PingRequest {}).await?;
        Ok(())
    }
}
