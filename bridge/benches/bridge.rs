//! Start-up of a 4-worker pool (warm cache, and cold with `DSPEX_BENCH_COLD=1`) and the latency of
//! a no-op tool call through the bridge. Prints a table.

use std::time::Instant;

use snakepit_grpc_bridge::{Bridge, Map};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    println!("{:<56} {:>12}", "measurement", "value");
    println!("{}", "-".repeat(70));

    if std::env::var_os("DSPEX_BENCH_COLD").is_some() {
        let cache = tempfile::tempdir().expect("temp dir");
        let started = Instant::now();
        let bridge = Bridge::builder()
            .cache_dir(cache.path())
            .workers(4)
            .start()
            .await
            .expect("cold start");
        println!(
            "{:<56} {:>10.1} s",
            "cold start, 4 workers (creates the Python environment)",
            started.elapsed().as_secs_f64()
        );
        bridge.shutdown().await.expect("shutdown");
    }

    // Make sure the environment exists, then time warm starts.
    Bridge::builder()
        .workers(1)
        .start()
        .await
        .expect("start")
        .shutdown()
        .await
        .expect("shutdown");
    let mut starts = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let bridge = Bridge::builder()
            .workers(4)
            .start()
            .await
            .expect("warm start");
        starts.push(started.elapsed().as_secs_f64() * 1e3);
        bridge.shutdown().await.expect("shutdown");
    }
    starts.sort_by(f64::total_cmp);
    println!(
        "{:<56} {:>10.0} ms",
        "warm start, 4 workers (median of 5)", starts[2]
    );

    let bridge = Bridge::builder().workers(1).start().await.expect("start");
    let session = bridge.create_session().await.expect("session");
    for _ in 0..200 {
        session
            .call_tool("snakepit.noop", Map::new())
            .await
            .expect("noop");
    }
    let mut latencies = Vec::new();
    for _ in 0..3000 {
        let started = Instant::now();
        session
            .call_tool("snakepit.noop", Map::new())
            .await
            .expect("noop");
        latencies.push(started.elapsed().as_secs_f64() * 1e6);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "{:<56} {:>10.0} us",
        "no-op tool call in a session, p50",
        percentile(&latencies, 0.5)
    );
    println!(
        "{:<56} {:>10.0} us",
        "no-op tool call in a session, p99",
        percentile(&latencies, 0.99)
    );
    bridge.shutdown().await.expect("shutdown");
}
