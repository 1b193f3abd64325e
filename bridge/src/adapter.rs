//! `GrpcPythonAdapter`: how snakepit starts a Python worker (forked by the fork server or
//! spawned plainly) and gets a gRPC client and a fast-path connection to it. The transport and
//! credentials live in `transport.rs`, the private directory in `workdir.rs`, the fork server in
//! `fork_server.rs`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use snakepit::{Adapter, BoxError, StartedWorker, WorkerCommand, WorkerContext, WorkerId};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::environment::PythonEnvironment;
use crate::fork_server::{ForkServer, ForkServerSpec, SHIM_WAIT_ENV, ServerKind};
use crate::proto::bridge_service_client::BridgeServiceClient;
use crate::proto::{PingRequest, PingResponse};
use crate::ray::RayPlacement;
pub use crate::transport::Transport;
use crate::transport::{Client, RunToken, channel_for};

/// The environment variable that tells workers the largest message they may send or accept.
const MAX_MESSAGE_ENV: &str = "SNAKEPIT_MAX_MESSAGE_BYTES";

/// The line a worker prints on standard output once it can serve.
const READY_PREFIX: &str = "SNAKEPIT_READY ";

/// A ready worker: its gRPC client and identity.
#[derive(Debug, Clone)]
pub struct WorkerConnection {
    pub(crate) client: Client,
    pub(crate) fast: Option<std::sync::Arc<crate::fast::FastConnection>>,
    pub(crate) info: PingResponse,
    pub(crate) address: String,
    fast_address: Option<String>,
}

impl WorkerConnection {
    /// The address the worker serves on: `unix:/path` or `tcp:127.0.0.1:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The address of the worker's fast path for DSPy calls, if it has one: `unix:/path`, or
    /// `tcp:host:port` (TLS, the run's token first) for a worker on Ray. Without one, DSPy calls
    /// go over gRPC.
    pub fn fast_path_address(&self) -> Option<&str> {
        self.fast_address.as_deref()
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

/// Starts `python -m snakepit_bridge.server` workers and connects to them over gRPC.
pub struct GrpcPythonAdapter {
    fork_server: Option<ForkServer>,
    max_message_bytes: usize,
    environment: PythonEnvironment,
    python_path: OsString,
    imports: Vec<String>,
    transport: Transport,
    env: Vec<(String, String)>,
    call_timeout: Duration,
    socket_dir: tempfile::TempDir,
    run_id: Option<String>,
    /// How long a shim waits for the fork server's control socket (while it starts again).
    fork_wait: Duration,
    token: RunToken,
    /// The run's token itself, which a TCP fast path asks for first (never shown by `Debug`).
    fast_token: Option<String>,
    tls_ca: Option<crate::transport::TlsCa>,
    /// The name the workers' certificate is checked against.
    tls_domain: String,
    /// Where the workers run when on a Ray cluster, and the pool's Ray driver.
    ray: Option<(RayPlacement, ForkServer)>,
}

/// The environment variable that tells the Ray driver which variables to send to a worker on the
/// cluster (the pool's, not the owner's whole environment).
const REMOTE_ENV: &str = "SNAKEPIT_REMOTE_ENV";

impl std::fmt::Debug for GrpcPythonAdapter {
    /// Environment values are not shown: they may hold API keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcPythonAdapter")
            .field("python", &self.environment.python())
            .field("transport", &self.transport)
            .field("imports", &self.imports)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field(
                "fork_server",
                &self.fork_server.as_ref().map(ForkServer::pid),
            )
            .field("max_message_bytes", &self.max_message_bytes)
            .field("socket_dir", &self.socket_dir.path())
            .field("ray", &self.ray.as_ref().map(|(placement, _)| placement))
            .finish()
    }
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
        let socket_dir = crate::workdir::create()?;
        let mut adapter = GrpcPythonAdapter {
            fork_server: None,
            max_message_bytes: crate::framing::DEFAULT_MAX_MESSAGE_BYTES,
            python_path: environment.python_path(python_path),
            environment,
            imports,
            transport,
            env,
            call_timeout: Duration::from_secs(10),
            socket_dir,
            run_id: None,
            fork_wait: Duration::from_secs(60),
            token: RunToken::default(),
            fast_token: None,
            tls_ca: None,
            tls_domain: "localhost".to_owned(),
            ray: None,
        };
        if transport.is_tcp() {
            let (token, metadata) = RunToken::generate()?;
            adapter.set_worker_file("SNAKEPIT_AUTH_TOKEN_FILE", "token", token.as_bytes())?;
            adapter.token = metadata;
            adapter.fast_token = Some(token);
        }
        #[cfg(feature = "tls")]
        if transport == Transport::TcpLoopbackTls {
            let (cert, key) = crate::transport::self_signed_certificate()?;
            adapter.set_worker_file("SNAKEPIT_TLS_CERT_FILE", "tls.crt", cert.as_bytes())?;
            adapter.set_worker_file("SNAKEPIT_TLS_KEY_FILE", "tls.key", key.as_bytes())?;
            adapter.tls_ca = Some(tonic::transport::Certificate::from_pem(cert));
        }
        Ok(adapter)
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
        let path = self.socket_dir.path().join(file_name);
        crate::workdir::write_private_file(&path, contents)?;
        self.env.retain(|(k, _)| k != variable);
        self.env
            .push((variable.to_owned(), path.to_string_lossy().into_owned()));
        Ok(())
    }

    /// The largest message (a request or a result, in bytes) either side sends or accepts on a
    /// call; a result over it comes back as [`BridgeError::ResultTooLarge`](crate::BridgeError).
    /// Default: 256 MiB. Set it before the workers (and the fork server) start.
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        // A frame's length is a u32, and the header needs room.
        self.max_message_bytes = bytes.clamp(1024, u32::MAX as usize - 64);
        self.env.retain(|(k, _)| k != MAX_MESSAGE_ENV);
        self.env.push((
            MAX_MESSAGE_ENV.to_owned(),
            self.max_message_bytes.to_string(),
        ));
        self
    }

    /// The largest message either side sends or accepts on a call, in bytes.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Starts a fork server: one Python process imports DSPy and gRPC once, and every worker is
    /// forked from it (tens of milliseconds instead of a cold interpreter, and shared pages). The
    /// pool then supervises a small shim per worker that lives and dies with it. The fork server
    /// itself is supervised: when it exits it is started again at once (its workers, which died
    /// with it, are replaced by the pool), and if it cannot be started again workers are spawned
    /// plainly from then on.
    pub async fn start_fork_server(&mut self, timeout: Duration) -> Result<(), BoxError> {
        let spec = ForkServerSpec {
            kind: ServerKind::Fork,
            python: self.environment.python().to_path_buf(),
            python_path: self.python_path.clone(),
            env: self.env.clone(),
            run_id: self.run_id.clone(),
            control: self.socket_dir.path().join("fork.sock"),
            ready_within: timeout,
        };
        self.fork_wait = timeout;
        self.fork_server = Some(ForkServer::start(spec).await?);
        Ok(())
    }

    /// Places every worker on the Ray cluster `placement` names: starts the pool's Ray driver
    /// (`python -m snakepit_bridge.ray_driver`; the environment must have Ray, see
    /// [`EnvironmentOptions::with_ray`](crate::environment::EnvironmentOptions::with_ray)) and
    /// waits until it is connected to the cluster. The adapter must use
    /// [`Transport::TcpLoopbackTls`]: the workers serve TLS and demand the run token. With the
    /// placement's own certificates ([`RayPlacement::tls`]) they serve those instead of the run's
    /// self-signed one.
    #[cfg(feature = "tls")]
    ///
    /// `runtime_dir` is the pool's registry ([`snakepit::PoolConfig::runtime_dir`]): the driver
    /// first ends the actors of its runs whose owner is dead.
    pub async fn place_on_ray(
        &mut self,
        placement: RayPlacement,
        timeout: Duration,
        runtime_dir: &Path,
    ) -> Result<(), BoxError> {
        placement.check()?;
        if self.transport != Transport::TcpLoopbackTls {
            return Err("workers on Ray need the TcpLoopbackTls transport".into());
        }
        if let Some(identity) = placement.tls_identity() {
            self.set_worker_file(
                "SNAKEPIT_TLS_CERT_FILE",
                "tls.crt",
                identity.cert_pem.as_bytes(),
            )?;
            self.set_worker_file(
                "SNAKEPIT_TLS_KEY_FILE",
                "tls.key",
                identity.key_pem.as_bytes(),
            )?;
            self.tls_ca = Some(tonic::transport::Certificate::from_pem(&identity.ca_pem));
            self.tls_domain = identity.domain.clone();
        }
        let spec = ForkServerSpec {
            kind: ServerKind::RayDriver(
                placement.driver_args(timeout, &crate::ray::dead_runs(runtime_dir)),
            ),
            python: self.environment.python().to_path_buf(),
            python_path: self.python_path.clone(),
            env: self.env.clone(),
            run_id: self.run_id.clone(),
            control: self.socket_dir.path().join("ray.sock"),
            ready_within: timeout,
        };
        self.fork_wait = timeout;
        let driver = ForkServer::start(spec).await?;
        self.ray = Some((placement, driver));
        Ok(())
    }

    /// Where the workers run, when on a Ray cluster.
    pub fn ray_placement(&self) -> Option<&RayPlacement> {
        self.ray.as_ref().map(|(placement, _)| placement)
    }

    /// The process id of the pool's Ray driver, if the workers are on Ray and it runs.
    pub fn ray_driver_pid(&self) -> Option<u32> {
        self.ray
            .as_ref()
            .map(|(_, driver)| driver.pid())
            .filter(|&pid| pid != 0)
    }

    /// Stops the fork server (its remaining workers die with it) and the Ray driver (its actors
    /// end with it). Called at shutdown.
    pub fn stop_fork_server(&self) {
        if let Some(fork) = &self.fork_server {
            fork.stop();
        }
        if let Some((_, driver)) = &self.ray {
            driver.stop();
        }
    }

    /// Whether new workers are forked from a fork server (false without one, and after a fork
    /// server that exited could not be started again).
    pub fn uses_fork_server(&self) -> bool {
        self.fork_server.as_ref().is_some_and(ForkServer::available)
    }

    /// The process id of the running fork server, if there is one.
    pub fn fork_server_pid(&self) -> Option<u32> {
        self.fork_server
            .as_ref()
            .map(ForkServer::pid)
            .filter(|&pid| pid != 0)
    }

    /// How often the fork server was started again after it exited.
    pub fn fork_server_restarts(&self) -> u32 {
        self.fork_server.as_ref().map_or(0, ForkServer::restarts)
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

impl Adapter for GrpcPythonAdapter {
    type Connection = WorkerConnection;

    fn command(&self, ctx: &WorkerContext) -> Result<WorkerCommand, BoxError> {
        let command = WorkerCommand::new(self.environment.python());
        // On Ray, always the shim: a driver that is gone for good makes it give up at once.
        let server = match &self.ray {
            Some((_, driver)) => Some(driver),
            None => self.fork_server.as_ref().filter(|f| f.available()),
        };
        let command = match server {
            Some(fork) => command
                .arg("-S")
                .arg(
                    self.environment
                        .package_root()
                        .join("snakepit_bridge")
                        .join("forkshim.py"),
                )
                .arg(fork.control())
                .arg("--")
                .env(SHIM_WAIT_ENV, self.fork_wait.as_secs_f64().to_string()),
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
            // TCP, with or without TLS; on Ray with the fast path on a port of its own (TLS, the
            // token first).
            _ if self.ray.is_some() => command.args(["--port", "0", "--fast-tcp"]),
            _ => command.args(["--port", "0"]),
        };
        for module in &self.imports {
            command = command.args(["--import", module]);
        }
        for (key, value) in &self.env {
            command = command.env(key, value);
        }
        if self.ray.is_some() {
            let names: Vec<&str> = self
                .env
                .iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| *k != "PYTHONPATH")
                .collect();
            command = command.env(REMOTE_ENV, names.join(","));
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
        // `<gRPC address>`, then ` fast=tcp:HOST:PORT` for a fast path on TCP.
        let announced = loop {
            match lines.next_line().await? {
                Some(line) => match line.strip_prefix(READY_PREFIX) {
                    Some(announced) => break announced.trim().to_owned(),
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
        let mut parts = announced.split_whitespace();
        let address = parts.next().unwrap_or_default().to_owned();
        #[cfg_attr(not(feature = "tls"), allow(unused_variables))]
        let fast_tcp = parts
            .find_map(|part| part.strip_prefix("fast=tcp:"))
            .map(str::to_owned);
        let channel = channel_for(
            &address,
            self.tls_ca
                .as_ref()
                .map(|ca| (ca, self.tls_domain.as_str())),
        )
        .await?;
        let mut client = BridgeServiceClient::with_interceptor(channel, self.token.clone())
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes);
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
        let mut fast_address = None;
        let fast = match self.transport {
            Transport::UnixSocket => Some(std::sync::Arc::new(
                crate::fast::FastConnection::connect(
                    &self.socket_path(ctx.id).with_extension("fast"),
                    self.max_message_bytes + crate::framing::LENGTH_OVERHEAD,
                )
                .await?,
            )),
            #[cfg(feature = "tls")]
            Transport::TcpLoopbackTls => match (fast_tcp, &self.tls_ca, &self.fast_token) {
                (Some(host_port), Some(ca), Some(token)) => {
                    let connection = crate::fast::FastConnection::connect_tls(
                        &host_port,
                        ca.get_ref(),
                        &self.tls_domain,
                        token,
                        self.max_message_bytes + crate::framing::LENGTH_OVERHEAD,
                    )
                    .await?;
                    fast_address = Some(format!("tcp:{host_port}"));
                    Some(std::sync::Arc::new(connection))
                }
                _ => None,
            },
            // TCP without TLS: gRPC only.
            _ => None,
        };
        if self.transport == Transport::UnixSocket {
            fast_address = Some(format!(
                "unix:{}",
                self.socket_path(ctx.id).with_extension("fast").display()
            ));
        }
        Ok(WorkerConnection {
            client,
            fast,
            info,
            address,
            fast_address,
        })
    }

    /// The worker's own memory, not the shim's: read from `/proc` for a local worker, asked of a
    /// worker on Ray (its ping says).
    async fn resident_bytes(&self, connection: &WorkerConnection, _pid: u32) -> Option<u64> {
        if self.ray.is_none() {
            return snakepit::resident_bytes(connection.pid());
        }
        let mut client = connection.client.clone();
        let pong = tokio::time::timeout(self.call_timeout, client.ping(PingRequest {}))
            .await
            .ok()?
            .ok()?
            .into_inner();
        (pong.resident_bytes > 0).then_some(pong.resident_bytes)
    }

    async fn health_check(&self, connection: &WorkerConnection) -> Result<(), BoxError> {
        // A fast path that broke (the worker sent what cannot be read) would fail every DSPy call
        // on this worker from now on: replace the worker.
        if connection.fast.as_ref().is_some_and(|f| f.is_closed()) {
            return Err("the worker's fast-path connection is closed".into());
        }
        let mut client = connection.client.clone();
        client.ping(PingRequest {}).await?;
        Ok(())
    }
}
