//! The fast path: DSPy calls as length-prefixed protobuf frames on one long-lived, multiplexed
//! Unix-socket connection per worker (see `python/snakepit_bridge/fastpath.py` for the framing).
//! A unary gRPC call through Python's grpc.aio costs about as much as the DSPy call itself.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

/// `RunModule`.
pub(crate) const RUN_MODULE: u8 = 1;
/// `CallInstance`.
pub(crate) const CALL_INSTANCE: u8 = 2;

const MAX_FRAME: usize = 256 * 1024 * 1024;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Vec<u8>, String>>>>>;

/// One worker's fast-path connection, shared by all calls in flight on it.
#[derive(Debug)]
pub(crate) struct FastConnection {
    frames: mpsc::UnboundedSender<Vec<u8>>,
    pending: Pending,
    next_id: AtomicU64,
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
            // The worker is gone: calls still waiting fail (their senders drop).
            routes.lock().expect("fast-path routes").clear();
        });
        Ok(FastConnection {
            frames,
            pending,
            next_id: AtomicU64::new(0),
        })
    }

    /// Sends one request and waits for its response payload.
    pub(crate) async fn call(&self, method: u8, request: &[u8]) -> Result<Vec<u8>, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, response) = oneshot::channel();
        self.pending
            .lock()
            .expect("fast-path routes")
            .insert(id, reply);
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
