//! `Bridge`: a pool of Python workers, provisioned and started in one call.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use snakepit::{
    Affinity, Checkout, CircuitBreakerConfig, Pool, PoolConfig, PoolConfigBuilder, PoolError,
    RetryPolicy,
};

use crate::adapter::{GrpcPythonAdapter, Transport, WorkerConnection};
use crate::environment::{EnvironmentOptions, PythonEnvironment};
use crate::error::{BridgeError, Result};
use crate::fast::Reply;

/// How long a call that timed out waits for the worker to confirm its cancel before it gives up
/// (and is then not sent again). A cancelled asyncio task ends within milliseconds; a call that
/// runs in a thread ends only when the thread does.
const CANCEL_CONFIRM_WITHIN: Duration = Duration::from_secs(2);

/// A failed attempt of a call, and whether sending the call again is safe: nothing of this
/// attempt runs in a worker any more (it crashed, or it confirmed the cancel of a timed-out call).
#[derive(Debug)]
pub(crate) struct Attempt {
    pub(crate) error: BridgeError,
    pub(crate) resend_safe: bool,
}

impl From<BridgeError> for Attempt {
    /// A crashed worker took the attempt with it; any other failure is final.
    fn from(error: BridgeError) -> Self {
        let resend_safe = matches!(&error, BridgeError::Pool(p) if p.is_retryable());
        Attempt { error, resend_safe }
    }
}

impl From<PoolError> for Attempt {
    fn from(error: PoolError) -> Self {
        BridgeError::from(error).into()
    }
}

pub(crate) use crate::transport::Client;

/// A running pool of Python workers. A cheap [`Clone`] handle; dropping the last one stops the
/// workers, [`Bridge::shutdown`] does so and waits.
///
/// ```no_run
/// # async fn demo() -> Result<(), snakepit_grpc_bridge::BridgeError> {
/// use snakepit_grpc_bridge::{Bridge, Value, args};
/// let bridge = Bridge::builder().workers(2).start().await?;
/// let session = bridge.create_session().await?;
/// let echoed = session.call_tool("snakepit.echo", args([("value", 42)])).await?;
/// assert_eq!(echoed, Value::Int(42));
/// bridge.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Bridge {
    pub(crate) pool: Pool<GrpcPythonAdapter>,
    pub(crate) inner: Arc<BridgeInner>,
}

#[derive(Debug)]
pub(crate) struct BridgeInner {
    next_session: AtomicU64,
    crash_grace: Duration,
    retry: Option<RetryPolicy>,
}

/// What a worker says about itself, from [`Bridge::ping`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerIdentity {
    /// `slot.generation` of the worker in the pool.
    pub worker_id: String,
    /// The pool run it belongs to.
    pub run_id: String,
    /// Its process id.
    pub pid: u32,
    /// Its Python version, e.g. `3.11.7`.
    pub python_version: String,
    /// The version of its `snakepit_bridge` package.
    pub package_version: String,
    /// The protocol it speaks, `snakepit.bridge.v1`.
    pub protocol: String,
    /// How many sessions it holds.
    pub sessions: u32,
    /// How many definitions (signatures, by hash) it holds; bounded, least recently used evicted.
    pub definitions: u32,
}

/// Configures and starts a [`Bridge`].
#[derive(Clone)]
pub struct BridgeBuilder {
    pool: PoolConfigBuilder,
    environment: EnvironmentOptions,
    imports: Vec<String>,
    python_path: Vec<PathBuf>,
    transport: Transport,
    env: Vec<(String, String)>,
    lm: Option<crate::lm::Lm>,
    fork_server: bool,
    retry: Option<RetryPolicy>,
    secret_names: Vec<String>,
    max_message_bytes: Option<usize>,
    ray: Option<crate::ray::RayPlacement>,
}

impl std::fmt::Debug for BridgeBuilder {
    /// Environment values are not shown: they may hold API keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeBuilder")
            .field("pool", &self.pool)
            .field("environment", &self.environment)
            .field("imports", &self.imports)
            .field("python_path", &self.python_path)
            .field("transport", &self.transport)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("lm", &self.lm)
            .field("fork_server", &self.fork_server)
            .field("retry", &self.retry)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("ray", &self.ray)
            .finish()
    }
}

/// Whether an environment variable's name says it holds a secret.
fn looks_secret(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL"]
        .iter()
        .any(|word| name.contains(word))
}

impl Default for BridgeBuilder {
    fn default() -> Self {
        BridgeBuilder {
            // Python workers are asyncio servers: many requests in flight each.
            pool: PoolConfig::builder()
                .size(2)
                .max_in_flight_per_worker(64)
                .startup_timeout(Duration::from_secs(60)),
            environment: EnvironmentOptions::default(),
            imports: Vec::new(),
            python_path: Vec::new(),
            transport: Transport::default(),
            env: Vec::new(),
            lm: None,
            fork_server: true,
            retry: None,
            secret_names: Vec::new(),
            max_message_bytes: None,
            ray: None,
        }
    }
}

impl BridgeBuilder {
    /// Number of Python workers. Default: 2.
    pub fn workers(mut self, n: usize) -> Self {
        self.pool = self.pool.size(n);
        self
    }

    /// Changes the pool configuration (timeouts, in-flight limit, restarts, ...).
    pub fn pool(mut self, configure: impl FnOnce(PoolConfigBuilder) -> PoolConfigBuilder) -> Self {
        self.pool = configure(self.pool);
        self
    }

    /// Runs workers with this interpreter instead of the managed environment (it must have the
    /// packages of `python/requirements.lock`). `DSPEX_PYTHON` does the same.
    pub fn python(mut self, interpreter: impl Into<PathBuf>) -> Self {
        self.environment.python = Some(interpreter.into());
        self
    }

    /// Where the managed environment and worker files are cached.
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.environment.cache_dir = Some(dir.into());
        self
    }

    /// A Python module every worker imports at start, e.g. one that registers `@tool` functions.
    pub fn import(mut self, module: impl Into<String>) -> Self {
        self.imports.push(module.into());
        self
    }

    /// A directory added to the workers' `PYTHONPATH`.
    pub fn python_path(mut self, dir: impl Into<PathBuf>) -> Self {
        self.python_path.push(dir.into());
        self
    }

    /// How Rust talks to the workers. Default: Unix sockets in a private directory.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// The LM every worker's DSPy calls use unless an instance or a call says otherwise.
    pub fn lm(mut self, lm: crate::lm::Lm) -> Self {
        self.lm = Some(lm);
        self
    }

    /// Forks workers from a pre-warmed Python process that has imported DSPy and gRPC once
    /// (fast start and replacement, shared memory pages) instead of starting each interpreter
    /// cold. Default: on; if the fork server cannot start, workers are spawned plainly (with a
    /// warning). `false` always spawns plain `python` processes.
    pub fn fork_server(mut self, enabled: bool) -> Self {
        self.fork_server = enabled;
        self
    }

    /// The largest message, in bytes, that either side sends or accepts on one call: a request
    /// over it fails before it is sent ([`BridgeError::InvalidValue`]), a result over it comes
    /// back as [`BridgeError::ResultTooLarge`] and the worker stays healthy. Default: 256 MiB.
    ///
    /// ```
    /// use snakepit_grpc_bridge::Bridge;
    /// let builder = Bridge::builder().max_message_bytes(16 * 1024 * 1024);
    /// ```
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = Some(bytes);
        self
    }

    /// Retries calls that are safe to send again: the session-less DSPy calls
    /// ([`Bridge::run_module`], [`Bridge::predict`], [`Bridge::chain_of_thought`], and so every
    /// typed `dspex` call) and [`Bridge::ping`], when their worker crashed, or when they timed
    /// out and the worker confirmed that it cancelled them (so two attempts of one call never run
    /// at the same time; a timeout the worker did not confirm is returned as it is). Calls in a
    /// session are never retried: their state died with the worker
    /// ([`PoolError::SessionWorkerLost`]). Default: no retries.
    ///
    /// ```
    /// use snakepit_grpc_bridge::{Bridge, RetryPolicy};
    /// let builder = Bridge::builder().retry(RetryPolicy::new(4));
    /// ```
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Opens the pool's circuit after `config.failure_threshold` failed calls in a row (a worker
    /// crash or timeout, or a Python exception such as an unreachable LM provider; not a parse
    /// error or a bad argument), so that a broken provider costs one probe per
    /// `config.open_for` instead of a retry storm. Calls fail fast with
    /// [`PoolError::CircuitOpen`] meanwhile. Default: none.
    pub fn circuit_breaker(mut self, config: CircuitBreakerConfig) -> Self {
        self.pool = self.pool.circuit_breaker(Some(config));
        self
    }

    /// An environment variable for every worker (through the worker's environment, never its
    /// arguments). Variables whose names contain `KEY`, `TOKEN`, `SECRET`, `PASSWORD` or
    /// `CREDENTIAL` are treated as secrets, like [`secret_env`](BridgeBuilder::secret_env).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        if looks_secret(&key) {
            self.secret_names.push(key.clone());
        }
        self.env.push((key, value.into()));
        self
    }

    /// A secret for every worker, e.g. an LM provider's API key: it reaches the workers only
    /// through their environment (not their arguments, so `ps` does not show it), is left out of
    /// `Debug` output, and the workers replace its value with `[REDACTED]` in every error message,
    /// traceback and log line they produce.
    ///
    /// ```
    /// use snakepit_grpc_bridge::Bridge;
    /// let builder = Bridge::builder().secret_env("MY_PROVIDER_CREDS", "s3cr3t-value");
    /// assert!(!format!("{builder:?}").contains("s3cr3t-value"));
    /// ```
    pub fn secret_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.secret_names.push(key.clone());
        self.env.push((key, value.into()));
        self
    }

    /// Sends the progress of provisioning the Python environment (the first start on a machine)
    /// to `report` instead of standard error: e.g. to a progress bar.
    ///
    /// ```
    /// use snakepit_grpc_bridge::Bridge;
    /// let builder = Bridge::builder().on_provisioning(|p| println!("{}", p.message));
    /// ```
    pub fn on_provisioning(
        mut self,
        report: impl Fn(&crate::ProvisionProgress) + Send + Sync + 'static,
    ) -> Self {
        self.environment = self.environment.on_progress(report);
        self
    }

    /// Runs every worker on a Ray cluster instead of this machine: each is hosted by a Ray actor
    /// and serves the worker API on its node over TCP with TLS and the run's token; the pool
    /// supervises them as it does local workers (through one local Ray driver process and a
    /// small shim per worker). The Python environment gets Ray (`requirements-ray.lock`), and
    /// the transport is [`Transport::TcpLoopbackTls`] whatever [`transport`](Self::transport)
    /// said. Everything above the bridge works unchanged.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), snakepit_grpc_bridge::BridgeError> {
    /// use snakepit_grpc_bridge::Bridge;
    /// let bridge = Bridge::builder().workers(4).ray("127.0.0.1:6379").start().await?;
    /// # Ok(()) }
    /// ```
    pub fn ray(mut self, placement: impl Into<crate::ray::RayPlacement>) -> Self {
        self.ray = Some(placement.into());
        self
    }

    /// Provisions the Python environment if needed (visible progress on standard error), then
    /// starts the workers and waits until all are ready.
    #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
    pub async fn start(mut self) -> Result<Bridge> {
        if let Some(placement) = &self.ray {
            placement.check().map_err(|message| BridgeError::Ray {
                address: placement.address().to_owned(),
                message,
            })?;
            #[cfg(not(feature = "tls"))]
            return Err(BridgeError::Ray {
                address: placement.address().to_owned(),
                message: "workers on Ray serve TLS: build with the `tls` feature".to_owned(),
            });
            #[cfg(feature = "tls")]
            {
                self.environment = self.environment.with_ray();
                self.transport = Transport::TcpLoopbackTls;
            }
        }
        let mut config = self.pool.build()?;
        // Chosen here so the fork server, started outside the pool, carries it too.
        let run_id = config
            .run_id
            .get_or_insert_with(snakepit::new_run_id)
            .clone();
        let options = self.environment.clone();
        let environment = tokio::task::spawn_blocking(move || PythonEnvironment::resolve(&options))
            .await
            .map_err(|e| BridgeError::Protocol(format!("the provisioning task failed: {e}")))??;
        let mut env = self.env;
        if !self.secret_names.is_empty() {
            env.push((
                "SNAKEPIT_SECRET_NAMES".to_owned(),
                self.secret_names.join(","),
            ));
        }
        let mut adapter = GrpcPythonAdapter::new(
            environment,
            self.imports,
            &self.python_path,
            self.transport,
            env,
        )
        .map(|adapter| adapter.with_run_id(&run_id))
        .map(|adapter| match self.max_message_bytes {
            Some(bytes) => adapter.with_max_message_bytes(bytes),
            None => adapter,
        })
        .map_err(|e| BridgeError::Protocol(format!("cannot create the socket directory: {e}")))?;
        if let Some(lm) = &self.lm {
            adapter
                .set_worker_file("SNAKEPIT_DSPY_LM_FILE", "lm.pb", &lm.to_bytes())
                .map_err(|e| BridgeError::Protocol(format!("cannot write the LM settings: {e}")))?;
        }
        #[cfg(feature = "tls")]
        if let Some(placement) = self.ray.clone() {
            let address = placement.address().to_owned();
            let runtime_dir = config
                .runtime_dir
                .clone()
                .unwrap_or_else(snakepit::registry::default_runtime_dir);
            adapter
                .place_on_ray(placement, config.startup_timeout, &runtime_dir)
                .await
                .map_err(|e| BridgeError::Ray {
                    address,
                    message: e.to_string(),
                })?;
        }
        if self.fork_server
            && self.ray.is_none()
            && let Err(e) = adapter.start_fork_server(config.startup_timeout).await
        {
            tracing::warn!(
                run_id = %run_id,
                error = %e,
                "the fork server did not start; spawning workers plainly"
            );
        }
        let pool = Pool::start(adapter, config).await?;
        Ok(Bridge {
            pool,
            inner: Arc::new(BridgeInner {
                next_session: AtomicU64::new(0),
                crash_grace: Duration::from_millis(500),
                retry: self.retry,
            }),
        })
    }
}

impl Bridge {
    /// A builder with the defaults.
    pub fn builder() -> BridgeBuilder {
        BridgeBuilder::default()
    }

    /// The underlying process pool (stats, workers, sessions).
    pub fn pool(&self) -> &Pool<GrpcPythonAdapter> {
        &self.pool
    }

    /// Pings the least-loaded worker: who it is and which versions it runs.
    pub async fn ping(&self) -> Result<WorkerIdentity> {
        let pong = self
            .retrying(|| async {
                // A ping changes nothing: sending it again is always safe.
                self.call(None, |mut c| async move {
                    c.ping(crate::proto::PingRequest {}).await
                })
                .await
                .map_err(|error| Attempt {
                    resend_safe: matches!(&error, BridgeError::Pool(p) if p.is_retryable() || p.is_timeout()),
                    error,
                })
            })
            .await?
            .into_inner();
        Ok(WorkerIdentity {
            worker_id: pong.worker_id,
            run_id: pong.run_id,
            pid: pong.pid,
            python_version: pong.python_version,
            package_version: pong.package_version,
            protocol: pong.protocol,
            sessions: pong.sessions,
            definitions: pong.definitions,
        })
    }

    /// Stops every worker and waits until they are gone.
    pub async fn shutdown(&self) -> Result<()> {
        self.pool.shutdown().await?;
        self.pool.adapter().stop_fork_server();
        Ok(())
    }

    /// Runs `attempt` under the retry policy, if there is one, sending it again only after a
    /// failure that says so. Only for calls that are safe to repeat once they no longer run.
    pub(crate) async fn retrying<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, Attempt>>,
    {
        let result = match &self.inner.retry {
            Some(policy) => {
                policy
                    .run(
                        |failed: &Attempt| failed.resend_safe,
                        |n| {
                            tracing::Span::current().record("attempt", n);
                            attempt()
                        },
                    )
                    .await
            }
            None => {
                tracing::Span::current().record("attempt", 1);
                attempt().await
            }
        };
        result.map_err(|failed| failed.error)
    }

    pub(crate) fn new_session_id(&self) -> String {
        let n = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        format!("{}-s{n}", self.pool.run_id())
    }

    pub(crate) async fn checkout(
        &self,
        session: Option<&str>,
    ) -> Result<Checkout<GrpcPythonAdapter>> {
        Ok(match session {
            Some(session) => {
                self.pool
                    .checkout_in_session(session, Affinity::Strict)
                    .await?
            }
            None => self.pool.checkout().await?,
        })
    }

    /// Runs one RPC on the session's worker (or any worker), turning a transport failure on a
    /// worker that died into [`PoolError::WorkerCrashed`].
    pub(crate) async fn call<T, F, Fut>(&self, session: Option<&str>, rpc: F) -> Result<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, tonic::Status>>,
    {
        self.call_unless_timed(session, false, rpc).await
    }

    /// [`call`](Self::call), with the pool's request timeout lifted when `unbounded`.
    pub(crate) async fn call_unless_timed<T, F, Fut>(
        &self,
        session: Option<&str>,
        unbounded: bool,
        rpc: F,
    ) -> Result<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, tonic::Status>>,
    {
        let mut checkout = self.checkout(session).await?;
        if unbounded {
            checkout.set_request_timeout(None);
        }
        let client = checkout.connection().client.clone();
        match checkout.run(rpc(client)).await? {
            Ok(value) => Ok(value),
            Err(status) => {
                checkout.mark_failed();
                Err(self.failure(&checkout, status).await)
            }
        }
    }

    pub(crate) async fn failure(
        &self,
        checkout: &Checkout<GrpcPythonAdapter>,
        status: tonic::Status,
    ) -> BridgeError {
        match checkout.exit_within(self.inner.crash_grace).await {
            Some(exit) => PoolError::WorkerCrashed {
                worker: checkout.worker(),
                exit,
            }
            .into(),
            None => BridgeError::Transport {
                worker: checkout.worker(),
                status: Box::new(status),
            },
        }
    }

    /// Runs a DSPy call on the worker's fast path (protobuf frames on a multiplexed Unix-socket
    /// connection) when it has one, else as the gRPC call `grpc`. A call that times out is
    /// cancelled in the worker; the failure says whether the worker confirmed that nothing of it
    /// runs any more (only then is it safe to send again). A call whose future is dropped is
    /// cancelled in the worker too. The request is encoded from the reference (the gRPC fallback
    /// alone needs a copy).
    ///
    /// `with_definition` is the same request carrying the definitions it names by hash: sent, on
    /// the same worker, only when the worker answers that it does not hold one of them.
    /// `unbounded` lifts the pool's request timeout for this call.
    pub(crate) async fn call_fast<M, F, Fut>(
        &self,
        session: Option<&str>,
        method: u8,
        request: &M,
        with_definition: Option<&(dyn Fn() -> M + Sync)>,
        unbounded: bool,
        grpc: F,
    ) -> std::result::Result<crate::proto::CallResponse, Attempt>
    where
        M: prost::Message + Clone,
        F: Fn(Client, M) -> Fut + Copy,
        Fut: Future<
            Output = std::result::Result<
                tonic::Response<crate::proto::CallResponse>,
                tonic::Status,
            >,
        >,
    {
        let mut checkout = self.checkout(session).await.map_err(Attempt::from)?;
        tracing::Span::current().record("worker", tracing::field::display(checkout.worker()));
        if unbounded {
            checkout.set_request_timeout(None);
        }
        let response = self.send(&checkout, method, request, grpc).await?;
        match with_definition {
            Some(full) if names_unknown_definition(&response) => {
                self.send(&checkout, method, &full(), grpc).await
            }
            _ => Ok(response),
        }
    }

    /// One request on a checked-out worker: see [`call_fast`](Self::call_fast).
    async fn send<M, F, Fut>(
        &self,
        checkout: &Checkout<GrpcPythonAdapter>,
        method: u8,
        request: &M,
        grpc: F,
    ) -> std::result::Result<crate::proto::CallResponse, Attempt>
    where
        M: prost::Message + Clone,
        F: FnOnce(Client, M) -> Fut,
        Fut: Future<
            Output = std::result::Result<
                tonic::Response<crate::proto::CallResponse>,
                tonic::Status,
            >,
        >,
    {
        let Some(fast) = checkout.connection().fast.clone() else {
            let client = checkout.connection().client.clone();
            // Dropping the gRPC call resets its stream, which cancels the handler in the worker,
            // but nothing confirms it: a timeout here is not safe to send again.
            return match checkout.run(grpc(client, request.clone())).await {
                Ok(Ok(response)) => Ok(judged(checkout, response.into_inner())),
                Ok(Err(status)) => {
                    checkout.mark_failed();
                    Err(self.failure(checkout, status).await.into())
                }
                Err(error) => Err(BridgeError::from(error).into()),
            };
        };
        let mut call = fast.start_message(method, request).map_err(|message| {
            let size = request.encoded_len();
            if size > fast.max_request() {
                BridgeError::InvalidValue(format!(
                    "the request is {size} bytes; one call may carry at most {} bytes",
                    fast.max_request()
                ))
            } else {
                checkout.mark_failed();
                BridgeError::Protocol(format!("fast path: {message}"))
            }
        })?;
        let reply = match checkout.run(call.response()).await {
            Ok(reply) => reply,
            Err(error @ PoolError::RequestTimeout { .. }) => {
                // Keep the slot until the worker confirms, so the in-flight limit bounds the
                // work that really runs.
                let confirmed = call.cancel(CANCEL_CONFIRM_WITHIN).await;
                if !confirmed {
                    tracing::warn!(worker = %checkout.worker(), "a timed-out call was not confirmed cancelled; it is not sent again");
                }
                return Err(Attempt {
                    error: error.into(),
                    resend_safe: confirmed,
                });
            }
            Err(error) => return Err(BridgeError::from(error).into()),
        };
        match reply {
            Reply::Response(payload) => prost::Message::decode(payload)
                .map(|response| judged(checkout, response))
                .map_err(|e| {
                    checkout.mark_failed();
                    BridgeError::Protocol(format!("a malformed fast-path response: {e}")).into()
                }),
            Reply::Failed(message) => {
                Err(match checkout.exit_within(self.inner.crash_grace).await {
                    Some(exit) => PoolError::WorkerCrashed {
                        worker: checkout.worker(),
                        exit,
                    }
                    .into(),
                    None => {
                        checkout.mark_failed();
                        BridgeError::Protocol(format!("fast path: {message}")).into()
                    }
                })
            }
            Reply::Cancelled => {
                checkout.mark_failed();
                Err(BridgeError::Protocol(
                    "the worker cancelled a call nobody cancelled".to_owned(),
                )
                .into())
            }
        }
    }

    /// The connection of the worker that serves `session`, for long-lived streams that should not
    /// hold a request slot.
    pub(crate) async fn connection(&self, session: &str) -> Result<WorkerConnection> {
        let checkout = self.checkout(Some(session)).await?;
        Ok(checkout.connection().clone())
    }
}

/// Tells the circuit breaker about a call that the worker answered with a Python exception (a
/// broken LM provider, a bug): a failure. Parse errors and bad arguments are the caller's or the
/// model's answer, not a broken dependency, and count as successes.
fn judged(
    checkout: &Checkout<GrpcPythonAdapter>,
    response: crate::proto::CallResponse,
) -> crate::proto::CallResponse {
    if let Some(crate::proto::call_response::Result::Error(error)) = &response.result
        && error.kind == crate::proto::ErrorKind::PythonException as i32
    {
        checkout.mark_failed();
    }
    response
}

/// Whether the worker answered that it does not hold a definition the request named.
fn names_unknown_definition(response: &crate::proto::CallResponse) -> bool {
    matches!(
        &response.result,
        Some(crate::proto::call_response::Result::Error(error))
            if error.kind == crate::proto::ErrorKind::UnknownDefinition as i32
    )
}
