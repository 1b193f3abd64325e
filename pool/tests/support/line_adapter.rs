//! An [`Adapter`] for the line-protocol test worker, used by the pool's tests and demo.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use snakepit::{Adapter, BoxError, StartedWorker, WorkerCommand, WorkerContext};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::ChildStdin;
use tokio::sync::oneshot;

/// Starts `program` (the test worker) with extra environment variables.
#[derive(Debug, Clone)]
pub struct LineAdapter {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl LineAdapter {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        LineAdapter {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_owned(), value.to_string()));
        self
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<String, String>>>>>;

/// One worker's stdin, and the replies routed by request id.
#[derive(Debug)]
pub struct LineConnection {
    pub pid: u32,
    stdin: tokio::sync::Mutex<ChildStdin>,
    pending: Pending,
    next_id: AtomicU64,
}

/// The worker answered `err`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSaidNo(pub String);

impl LineConnection {
    /// Sends one request and waits for its reply. If the worker dies the future stays pending:
    /// the pool resolves it with `WorkerCrashed`.
    pub async fn request(&self, line: &str) -> Result<String, WorkerSaidNo> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (reply, answer) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, reply);
        if self.send(&format!("{id} {line}")).await.is_err() {
            return std::future::pending().await;
        }
        match answer.await {
            Ok(Ok(text)) => Ok(text),
            Ok(Err(text)) => Err(WorkerSaidNo(text)),
            Err(_) => std::future::pending().await,
        }
    }

    /// Sends a request whose reply nobody waits for.
    pub async fn send(&self, line: &str) -> std::io::Result<()> {
        let mut stdin = self.stdin.lock().await;
        stdin.write_all(format!("{line}\n").as_bytes()).await?;
        stdin.flush().await
    }
}

impl Adapter for LineAdapter {
    type Connection = LineConnection;

    fn command(&self, _ctx: &WorkerContext) -> Result<WorkerCommand, BoxError> {
        let mut command = WorkerCommand::new(&self.program)
            .args(&self.args)
            .piped_stdin()
            .piped_stdout();
        for (key, value) in &self.env {
            command = command.env(key, value);
        }
        Ok(command)
    }

    async fn connect(
        &self,
        _ctx: &WorkerContext,
        process: &mut StartedWorker,
    ) -> Result<LineConnection, BoxError> {
        let stdin = process.take_stdin().ok_or("stdin was not piped")?;
        let stdout = process.take_stdout().ok_or("stdout was not piped")?;
        let mut lines = BufReader::new(stdout).lines();
        match lines.next_line().await? {
            Some(line) if line == "ready" => {}
            Some(other) => return Err(format!("expected `ready`, got {other:?}").into()),
            None => return Err("the worker closed its stdout before saying ready".into()),
        }
        let pending: Pending = Arc::default();
        let routes = pending.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut parts = line.splitn(3, ' ');
                let (Some(id), Some(kind)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let text = parts.next().unwrap_or_default().to_owned();
                let Ok(id) = id.parse::<u64>() else { continue };
                if let Some(reply) = routes.lock().unwrap().remove(&id) {
                    let _ = reply.send(if kind == "ok" { Ok(text) } else { Err(text) });
                }
            }
            // End of output: the worker is gone. The connection still holds the senders, so
            // requests stay pending until the pool reports the crash and drops the connection.
        });
        Ok(LineConnection {
            pid: process.pid(),
            stdin: tokio::sync::Mutex::new(stdin),
            pending,
            next_id: AtomicU64::new(0),
        })
    }

    async fn health_check(&self, connection: &LineConnection) -> Result<(), BoxError> {
        connection
            .request("ping")
            .await
            .map(drop)
            .map_err(|e| e.0.into())
    }

    async fn stop(&self, connection: &LineConnection) -> Result<(), BoxError> {
        connection.send("0 stop").await.map_err(Into::into)
    }
}
