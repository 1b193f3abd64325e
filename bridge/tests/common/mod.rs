//! A bridge shared by the tests of one binary, on one runtime that outlives each test.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::LazyLock;

use snakepit_grpc_bridge::{Bridge, BridgeBuilder};
use tokio::runtime::Runtime;
use tokio::sync::OnceCell;

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
});

static SHARED: OnceCell<Bridge> = OnceCell::const_new();

/// Runs a test body on the shared runtime.
pub fn run<F: Future>(body: F) -> F::Output {
    RUNTIME.block_on(body)
}

pub fn test_python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

/// A builder for workers that load the test tools.
pub fn builder() -> BridgeBuilder {
    Bridge::builder()
        .python_path(test_python_dir())
        .import("bridge_test_tools")
}

/// The bridge of this test binary: two workers with the test tools.
pub async fn shared() -> &'static Bridge {
    SHARED
        .get_or_init(|| async {
            builder()
                .workers(2)
                .start()
                .await
                .expect("the shared bridge starts")
        })
        .await
}

/// Polls `condition` every 20 ms until it holds or `within` passes; returns whether it held.
pub async fn eventually(within: std::time::Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
