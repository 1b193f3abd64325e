//! The fast path: DSPy calls as length-prefixed protobuf frames on one long-lived, multiplexed
//! connection per worker (see `python/snakepit_bridge/fastpath.py` for the framing): a Unix
//! socket for local workers, TCP with TLS for workers on another machine (Ray), where the first
//! frame presents the run's token. A unary gRPC call through Python's grpc.aio costs about as
//! much as the DSPy call itself.
//!
//! A call whose caller goes away (its future dropped, or timed out by the pool) is cancelled in
//! the worker: a [`CANCEL`] frame with the call's id makes the worker cancel that task (the LM
//! request is abandoned), and the worker confirms with a [`STATUS_CANCELLED`] frame once nothing
//! of the call runs any more. [`FastCall::cancel`] waits for that confirmation, so a caller can
//! tell whether sending the request again could make two attempts run at once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;

#[cfg(feature = "tls")]
use crate::framing::AUTHENTICATE;
pub(crate) use crate::framing::{CALL_INSTANCE, LENGTH_OVERHEAD, RUN_MODULE};
use crate::framing::{
    CANCEL, FrameCodec, HEADER_BYTES, Incoming, STATUS_CANCELLED, STATUS_FAILED, STATUS_OK, encode,
    encode_header,
};

/// How a call ended on the worker's side.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The worker's `CallResponse`, encoded (a view into the read buffer, not a copy).
    Response(Bytes),
    /// The frame could not be served, or the reply could not be read; says why.
    Failed(String),
    /// The worker confirmed a cancel: nothing of the call runs any more.
    Cancelled,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>;

/// One worker's fast-path connection, shared by all calls in flight on it.
#[derive(Debug)]
pub(crate) struct FastConnection {
    frames: mpsc::UnboundedSender<Vec<u8>>,
    pending: Pending,
    next_id: AtomicU64,
    max_frame: usize,
    /// Set once the reader stopped (worker gone, or a frame it could not read): no answer can
    /// come any more, so new calls fail at once instead of waiting forever, and the worker's
    /// health check fails so that the pool replaces it.
    closed: Arc<AtomicBool>,
}

fn lock(pending: &Pending) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Reply>>> {
    pending.lock().unwrap_or_else(|p| p.into_inner())
}

fn frame(id: u64, method: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    encode(id, method, payload, &mut frame);
    frame
}

impl FastConnection {
    /// Connects to the worker's fast-path socket and starts the reader and writer tasks, which end
    /// when the worker closes the connection (every call still waiting then fails). Frames longer
    /// than `max_frame` bytes are refused in both directions.
    pub(crate) async fn connect(path: &Path, max_frame: usize) -> std::io::Result<Self> {
        let stream = UnixStream::connect(path).await?;
        let (reader, writer) = stream.into_split();
        Ok(Self::over(reader, writer, max_frame))
    }

    /// Connects to a worker's fast path on TCP (`host:port`) over TLS, trusting the certificate
    /// authority `ca` (PEM) for the name `domain`, and presents the run's `token`; fails unless
    /// the worker acknowledges it.
    #[cfg(feature = "tls")]
    pub(crate) async fn connect_tls(
        host_port: &str,
        ca_pem: &[u8],
        domain: &str,
        token: &str,
        max_frame: usize,
    ) -> std::io::Result<Self> {
        use tokio::io::AsyncReadExt;
        use tokio_rustls::rustls;
        let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
        let config = crate::transport::rustls_client_config(ca_pem).map_err(invalid)?;
        let name = rustls::pki_types::ServerName::try_from(domain.to_owned())
            .map_err(|e| invalid(format!("{domain:?} is not a server name: {e}")))?;
        let tcp = tokio::net::TcpStream::connect(host_port).await?;
        tcp.set_nodelay(true)?;
        let mut stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        stream
            .write_all(&frame(0, AUTHENTICATE, token.as_bytes()))
            .await?;
        stream.flush().await?;
        let mut header = [0u8; HEADER_BYTES];
        stream.read_exact(&mut header).await?;
        let length = u32::from_le_bytes(header[..4].try_into().unwrap_or_default()) as usize;
        if length != LENGTH_OVERHEAD || header[HEADER_BYTES - 1] != STATUS_OK {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the worker did not accept the run's token on its fast path",
            ));
        }
        let (reader, writer) = tokio::io::split(stream);
        Ok(Self::over(reader, writer, max_frame))
    }

    /// A connection on `reader`/`writer`: starts the reader and writer tasks.
    fn over<R, W>(reader: R, writer: W, max_frame: usize) -> Self
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let (frames, outgoing) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(write_frames(writer, outgoing));
        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        tokio::spawn(read_replies(
            reader,
            pending.clone(),
            closed.clone(),
            max_frame,
        ));
        FastConnection {
            frames,
            pending,
            next_id: AtomicU64::new(0),
            max_frame,
            closed,
        }
    }

    /// Whether the connection is gone for good: the worker closed it or sent what cannot be read.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The largest request payload a call may carry.
    pub(crate) fn max_request(&self) -> usize {
        self.max_frame - LENGTH_OVERHEAD
    }

    /// Sends one request. Await [`FastCall::response`] for the answer; dropping the call before
    /// it came cancels it in the worker.
    #[cfg(test)]
    pub(crate) fn start(&self, method: u8, request: &[u8]) -> Result<FastCall<'_>, String> {
        self.start_frame(method, request.len(), |frame| {
            frame.extend_from_slice(request)
        })
    }

    /// [`start`](Self::start) for a protobuf message, encoded straight into its frame.
    pub(crate) fn start_message(
        &self,
        method: u8,
        request: &impl prost::Message,
    ) -> Result<FastCall<'_>, String> {
        self.start_frame(method, request.encoded_len(), |frame| {
            request.encode_raw(frame)
        })
    }

    fn start_frame(
        &self,
        method: u8,
        payload_len: usize,
        payload: impl FnOnce(&mut Vec<u8>),
    ) -> Result<FastCall<'_>, String> {
        if payload_len > self.max_request() {
            return Err(format!(
                "a request of {payload_len} bytes is larger than a frame may carry ({} bytes)",
                self.max_request()
            ));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, response) = oneshot::channel();
        lock(&self.pending).insert(id, reply);
        let mut frame = Vec::with_capacity(HEADER_BYTES + payload_len);
        encode_header(id, method, payload_len, &mut frame);
        payload(&mut frame);
        // Checked after registering: the reader sets the flag before it clears the routes.
        if self.is_closed() || self.frames.send(frame).is_err() {
            lock(&self.pending).remove(&id);
            return Err("the fast-path connection is closed".into());
        }
        Ok(FastCall {
            connection: self,
            id,
            response,
            done: false,
        })
    }

    /// Sends one request and waits for its answer (a convenience for tests).
    #[cfg(test)]
    pub(crate) async fn call(&self, method: u8, request: &[u8]) -> Result<Vec<u8>, String> {
        match self.start(method, request)?.response().await {
            Reply::Response(payload) => Ok(payload.to_vec()),
            Reply::Failed(message) => Err(message),
            Reply::Cancelled => Err("cancelled".into()),
        }
    }
}

/// One call in flight on a [`FastConnection`]. Dropped before its reply came, it sends a cancel
/// frame to the worker and forgets the call.
#[derive(Debug)]
pub(crate) struct FastCall<'a> {
    connection: &'a FastConnection,
    id: u64,
    response: oneshot::Receiver<Reply>,
    done: bool,
}

impl FastCall<'_> {
    /// Waits for the worker's reply. Cancel-safe: dropping this future leaves the call in flight.
    pub(crate) async fn response(&mut self) -> Reply {
        let reply = (&mut self.response)
            .await
            .unwrap_or_else(|_| Reply::Failed("the worker closed the fast-path connection".into()));
        self.done = true;
        reply
    }

    /// Cancels the call and waits up to `confirm_within` for the worker to say that nothing of it
    /// runs any more. Returns whether it did: either its cancel confirmation or its real reply
    /// (when it finished before the cancel arrived) came back.
    pub(crate) async fn cancel(mut self, confirm_within: Duration) -> bool {
        if self.done {
            return true;
        }
        self.done = true;
        if self
            .connection
            .frames
            .send(frame(self.id, CANCEL, &[]))
            .is_err()
        {
            lock(&self.connection.pending).remove(&self.id);
            return false;
        }
        matches!(
            tokio::time::timeout(confirm_within, &mut self.response).await,
            Ok(Ok(Reply::Cancelled | Reply::Response(_)))
        )
    }
}

impl Drop for FastCall<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Nobody waits for the answer any more: forget the call, and tell the worker to stop it.
        lock(&self.connection.pending).remove(&self.id);
        let _ = self.connection.frames.send(frame(self.id, CANCEL, &[]));
    }
}

async fn write_frames(
    writer: impl AsyncWrite + Unpin,
    mut outgoing: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let mut writer = BufWriter::new(writer);
    while let Some(frame) = outgoing.recv().await {
        if writer.write_all(&frame).await.is_err() {
            return;
        }
        // Batch whatever else is already queued into the same write.
        while let Ok(frame) = outgoing.try_recv() {
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
        if writer.flush().await.is_err() {
            return;
        }
    }
}

async fn read_replies(
    reader: impl AsyncRead + Unpin,
    routes: Pending,
    closed: Arc<AtomicBool>,
    max_frame: usize,
) {
    let mut frames = FramedRead::with_capacity(reader, FrameCodec::new(max_frame), 64 * 1024);
    while let Some(incoming) = frames.next().await {
        let (id, reply) = match incoming {
            Ok(Incoming::Frame { id, code, payload }) => (
                id,
                match code {
                    STATUS_OK => Reply::Response(payload),
                    STATUS_FAILED => Reply::Failed(String::from_utf8_lossy(&payload).into_owned()),
                    STATUS_CANCELLED => Reply::Cancelled,
                    other => Reply::Failed(format!("the worker sent an unknown status {other}")),
                },
            ),
            // Too large to hold, but well-formed: that call fails, the connection stays.
            Ok(Incoming::Oversized { id, length }) => (
                id,
                Reply::Failed(format!(
                    "the worker's reply of {length} bytes is larger than a frame may be ({max_frame} bytes)"
                )),
            ),
            Err(error) => {
                tracing::warn!(%error, "closing a fast-path connection");
                break;
            }
        };
        let waiter = lock(&routes).remove(&id);
        if let Some(waiter) = waiter {
            let _ = waiter.send(reply);
        }
    }
    // The worker is gone, or sent what cannot be read: calls still waiting fail (their senders
    // drop), and so do later ones.
    closed.store(true, Ordering::Release);
    lock(&routes).clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::DEFAULT_MAX_MESSAGE_BYTES;
    use tokio::io::AsyncReadExt;
    use tokio::net::UnixListener;

    const DEFAULT_MAX_FRAME: usize = DEFAULT_MAX_MESSAGE_BYTES + LENGTH_OVERHEAD;

    /// A fake worker that reads one request frame's header, answers with `reply`, then either
    /// closes the connection or keeps it open.
    async fn fake_worker(reply: Vec<u8>, keep_open: bool) -> (FastConnection, tempfile::TempDir) {
        let (listener, path, dir) = listen();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut header = [0u8; HEADER_BYTES];
            let _ = stream.read_exact(&mut header).await;
            let _ = stream.write_all(&reply).await;
            if keep_open {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        });
        (
            FastConnection::connect(&path, DEFAULT_MAX_FRAME)
                .await
                .unwrap(),
            dir,
        )
    }

    /// A listening socket for a fake worker, in a directory of its own.
    fn listen() -> (UnixListener, std::path::PathBuf, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.sock");
        (UnixListener::bind(&path).unwrap(), path, dir)
    }

    /// Reads one request frame: its id and method.
    async fn read_request(stream: &mut UnixStream) -> (u64, u8) {
        let mut header = [0u8; HEADER_BYTES];
        stream.read_exact(&mut header).await.unwrap();
        let length = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
        let mut payload = vec![0u8; length - LENGTH_OVERHEAD];
        stream.read_exact(&mut payload).await.unwrap();
        (
            u64::from_le_bytes(header[4..12].try_into().unwrap()),
            header[12],
        )
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn after_an_unreadable_frame_calls_fail_at_once_instead_of_waiting_forever() {
        runtime().block_on(async {
            // A frame length of 3 is impossible (the header alone is 9): the reader gives up,
            // although the worker keeps the connection open.
            let mut bad = 3u32.to_le_bytes().to_vec();
            bad.extend_from_slice(&[0; 9]);
            let (fast, _dir) = fake_worker(bad, true).await;
            let first = tokio::time::timeout(Duration::from_secs(5), fast.call(RUN_MODULE, b"x"))
                .await
                .expect("the first call does not hang");
            assert!(first.is_err());
            assert!(fast.is_closed(), "the health check can see it");
            let second = tokio::time::timeout(Duration::from_secs(5), fast.call(RUN_MODULE, b"x"))
                .await
                .expect("a later call does not hang");
            assert_eq!(second.unwrap_err(), "the fast-path connection is closed");
        });
    }

    #[test]
    fn an_oversized_reply_fails_its_call_and_keeps_the_connection() {
        runtime().block_on(async {
            let (listener, path, _dir) = listen();
            tokio::spawn(async move {
                let (mut stream, _) = listener.accept().await.unwrap();
                // First request: a reply of 2,000 payload bytes. Second: a small one.
                let (first, _) = read_request(&mut stream).await;
                stream
                    .write_all(&frame(first, STATUS_OK, &[7u8; 2000]))
                    .await
                    .unwrap();
                let (second, _) = read_request(&mut stream).await;
                stream
                    .write_all(&frame(second, STATUS_OK, b"ok"))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_secs(3600)).await;
            });
            let fast = FastConnection::connect(&path, 1000).await.unwrap();
            let error = fast.call(RUN_MODULE, b"a").await.unwrap_err();
            assert!(error.contains("larger than a frame may be"), "{error}");
            assert!(!fast.is_closed());
            assert_eq!(fast.call(RUN_MODULE, b"b").await.unwrap(), b"ok");
        });
    }

    #[test]
    fn a_dropped_call_sends_a_cancel_frame_with_its_id() {
        runtime().block_on(async {
            let (listener, path, _dir) = listen();
            let (seen, frames) = oneshot::channel();
            tokio::spawn(async move {
                let (mut stream, _) = listener.accept().await.unwrap();
                let first = read_request(&mut stream).await;
                let second = read_request(&mut stream).await;
                let _ = seen.send(vec![first, second]);
            });
            let fast = FastConnection::connect(&path, DEFAULT_MAX_FRAME)
                .await
                .unwrap();
            let call = fast.start(RUN_MODULE, b"x").unwrap();
            let id = call.id;
            drop(call);
            let headers = frames.await.unwrap();
            assert_eq!(headers, [(id, RUN_MODULE), (id, CANCEL)]);
            assert!(
                lock(&fast.pending).is_empty(),
                "the dropped call is forgotten"
            );
        });
    }

    #[test]
    fn cancel_is_confirmed_only_by_the_worker() {
        runtime().block_on(async {
            // A worker that never answers: no confirmation.
            let (fast, _dir) = fake_worker(Vec::new(), true).await;
            let call = fast.start(RUN_MODULE, b"x").unwrap();
            assert!(!call.cancel(Duration::from_millis(100)).await);
            // A worker that confirms.
            let (fast, _dir) = fake_worker(frame(0, STATUS_CANCELLED, &[]), true).await;
            let call = fast.start(RUN_MODULE, b"x").unwrap();
            assert!(call.cancel(Duration::from_secs(5)).await);
        });
    }

    #[test]
    fn an_oversized_request_is_refused_before_it_is_sent() {
        runtime().block_on(async {
            let (fast, _dir) = fake_worker(Vec::new(), true).await;
            let huge = vec![0u8; DEFAULT_MAX_FRAME];
            let error = fast.call(RUN_MODULE, &huge).await.unwrap_err();
            assert!(error.contains("larger than a frame may carry"), "{error}");
        });
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(64))]

        /// Whatever bytes a worker answers before it goes away, the call ends (an answer or an
        /// error) and nothing panics.
        #[test]
        fn any_reply_bytes_end_the_call(reply in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            runtime().block_on(async {
                let (fast, _dir) = fake_worker(reply, false).await;
                let outcome = tokio::time::timeout(Duration::from_secs(5), fast.call(RUN_MODULE, b"x")).await;
                proptest::prop_assert!(outcome.is_ok(), "the call hung");
                Ok(())
            })?;
        }
    }
}
