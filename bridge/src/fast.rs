//! The fast path: DSPy calls as length-prefixed protobuf frames on one long-lived, multiplexed
//! Unix-socket connection per worker (see `python/snakepit_bridge/fastpath.py` for the framing).
//! A unary gRPC call through Python's grpc.aio costs about as much as the DSPy call itself.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

/// `RunModule`.
pub(crate) const RUN_MODULE: u8 = 1;
/// `CallInstance`.
pub(crate) const CALL_INSTANCE: u8 = 2;

/// The largest frame either side accepts (the worker closes the connection on a larger one).
pub(crate) const MAX_FRAME: usize = 256 * 1024 * 1024;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Vec<u8>, String>>>>>;

/// One worker's fast-path connection, shared by all calls in flight on it.
#[derive(Debug)]
pub(crate) struct FastConnection {
    frames: mpsc::UnboundedSender<Vec<u8>>,
    pending: Pending,
    next_id: AtomicU64,
    /// Set once the reader stopped (worker gone, or a frame it could not read): no answer can
    /// come any more, so new calls fail at once instead of waiting forever.
    closed: Arc<AtomicBool>,
}

impl FastConnection {
    /// Connects to the worker's fast-path socket and starts the reader and writer tasks, which end
    /// when the worker closes the connection (every call still waiting then fails).
    pub(crate) async fn connect(path: &Path) -> std::io::Result<Self> {
        let stream = UnixStream::connect(path).await?;
        let (mut reader, writer) = stream.into_split();
        let (frames, mut outgoing) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
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
        });
        let pending: Pending = Arc::default();
        let routes = pending.clone();
        let closed = Arc::new(AtomicBool::new(false));
        let reader_closed = closed.clone();
        tokio::spawn(async move {
            let mut header = [0u8; 13];
            loop {
                if reader.read_exact(&mut header).await.is_err() {
                    break;
                }
                let length = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
                let id = u64::from_le_bytes(header[4..12].try_into().expect("8 bytes"));
                let status = header[12];
                if !(9..=MAX_FRAME).contains(&length) {
                    break;
                }
                let mut payload = vec![0u8; length - 9];
                if reader.read_exact(&mut payload).await.is_err() {
                    break;
                }
                let waiter = routes.lock().expect("fast-path routes").remove(&id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(if status == 0 {
                        Ok(payload)
                    } else {
                        Err(String::from_utf8_lossy(&payload).into_owned())
                    });
                }
            }
            // The worker is gone, or sent what cannot be read: calls still waiting fail (their
            // senders drop), and so do later ones.
            reader_closed.store(true, Ordering::Release);
            routes.lock().expect("fast-path routes").clear();
        });
        Ok(FastConnection {
            frames,
            pending,
            next_id: AtomicU64::new(0),
            closed,
        })
    }

    /// Sends one request and waits for its response payload.
    pub(crate) async fn call(&self, method: u8, request: &[u8]) -> Result<Vec<u8>, String> {
        if request.len() + 9 > MAX_FRAME {
            return Err(format!(
                "a request of {} bytes is larger than a frame may be ({MAX_FRAME} bytes)",
                request.len()
            ));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, response) = oneshot::channel();
        self.pending
            .lock()
            .expect("fast-path routes")
            .insert(id, reply);
        // Checked after registering: the reader sets the flag before it clears the routes.
        if self.closed.load(Ordering::Acquire) {
            self.pending.lock().expect("fast-path routes").remove(&id);
            return Err("the fast-path connection is closed".into());
        }
        let mut frame = Vec::with_capacity(13 + request.len());
        frame.extend_from_slice(&((request.len() + 9) as u32).to_le_bytes());
        frame.extend_from_slice(&id.to_le_bytes());
        frame.push(method);
        frame.extend_from_slice(request);
        if self.frames.send(frame).is_err() {
            self.pending.lock().expect("fast-path routes").remove(&id);
            return Err("the fast-path connection is closed".into());
        }
        // A call dropped while waiting leaves its entry until the answer arrives; that is bounded
        // by the requests in flight.
        response
            .await
            .map_err(|_| "the worker closed the fast-path connection".to_owned())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::net::UnixListener;

    /// A fake worker that reads one request frame's header, answers with `reply`, then either
    /// closes the connection or keeps it open.
    async fn fake_worker(reply: Vec<u8>, keep_open: bool) -> (FastConnection, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut header = [0u8; 13];
            let _ = stream.read_exact(&mut header).await;
            let _ = stream.write_all(&reply).await;
            if keep_open {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        });
        (FastConnection::connect(&path).await.unwrap(), dir)
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
            let second = tokio::time::timeout(Duration::from_secs(5), fast.call(RUN_MODULE, b"x"))
                .await
                .expect("a later call does not hang");
            assert_eq!(second.unwrap_err(), "the fast-path connection is closed");
        });
    }

    #[test]
    fn an_oversized_request_is_refused_before_it_is_sent() {
        runtime().block_on(async {
            let (fast, _dir) = fake_worker(Vec::new(), true).await;
            let huge = vec![0u8; MAX_FRAME];
            let error = fast.call(RUN_MODULE, &huge).await.unwrap_err();
            assert!(error.contains("larger than a frame may be"), "{error}");
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
