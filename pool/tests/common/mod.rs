//! Helpers shared by the pool's integration tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::future::Future;
use std::time::{Duration, Instant};

use snakepit::{Pool, PoolConfig, PoolConfigBuilder, PoolError};

#[path = "../support/line_adapter.rs"]
mod line_adapter;
pub use line_adapter::{LineAdapter, WorkerSaidNo};

pub const WORKER: &str = env!("CARGO_BIN_EXE_snakepit-test-worker");

pub fn adapter() -> LineAdapter {
    LineAdapter::new(WORKER)
}

/// A config builder whose registry lives in its own temporary directory.
pub fn config(size: usize) -> (tempfile::TempDir, PoolConfigBuilder) {
    let dir = tempfile::tempdir().expect("temp dir");
    let builder = PoolConfig::builder()
        .size(size)
        .runtime_dir(dir.path())
        .startup_timeout(Duration::from_secs(20));
    (dir, builder)
}

pub async fn start(adapter: LineAdapter, builder: PoolConfigBuilder) -> Pool<LineAdapter> {
    Pool::start(adapter, builder.build().expect("valid config"))
        .await
        .expect("pool starts")
}

/// Sends one request line through the pool.
pub async fn request(
    pool: &Pool<LineAdapter>,
    line: &str,
) -> Result<Result<String, WorkerSaidNo>, PoolError> {
    let line = line.to_owned();
    pool.execute(|c| async move { c.request(&line).await })
        .await
}

/// The pid of the worker that serves the next request.
pub async fn pid_of_next(pool: &Pool<LineAdapter>) -> u32 {
    request(pool, "pid")
        .await
        .expect("pool answers")
        .expect("worker answers")
        .parse()
        .expect("a pid")
}

/// Polls `condition` every 10 ms until it holds, panicking with `what` after `within`.
pub async fn eventually<F: FnMut() -> bool>(within: Duration, what: &str, mut condition: F) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls an async `condition` like [`eventually`].
pub async fn eventually_async<F, Fut>(within: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_owned));
            !matches!(state.as_deref(), None | Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}
