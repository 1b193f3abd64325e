//! Owns a bridge of Python workers until it is killed: the reliability tests SIGKILL it.
//!
//! `bridge-owner <runtime dir> <fork|spawn|ray:ADDRESS>` starts two workers with the fork server,
//! plain spawn, or on the Ray cluster at `ADDRESS`, registering the run in `<runtime dir>`, prints
//! `READY <run id>` and waits forever.

use std::time::Duration;

use dspex::snakepit_grpc_bridge::Bridge;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(runtime_dir), Some(mode)) = (args.next(), args.next()) else {
        eprintln!("usage: bridge-owner <runtime dir> <fork|spawn|ray:ADDRESS>");
        std::process::exit(2);
    };
    let mut builder = Bridge::builder()
        .workers(2)
        .fork_server(mode == "fork")
        .pool(|p| p.runtime_dir(&runtime_dir));
    if let Some(address) = mode.strip_prefix("ray:") {
        builder = builder.ray(address);
    }
    let bridge = builder.start().await.unwrap_or_else(|e| {
        eprintln!("bridge-owner: {e}");
        std::process::exit(1);
    });
    bridge.ping().await.expect("a worker answers");
    println!("READY {}", bridge.pool().run_id());
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
