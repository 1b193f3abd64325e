//! Start-up time of N test workers (started concurrently) and requests per second through the
//! pool. Prints a table; run with `cargo bench -p snakepit`.

#[path = "../tests/support/line_adapter.rs"]
mod line_adapter;

use std::time::Instant;

use line_adapter::LineAdapter;
use snakepit::{Pool, PoolConfig};

const WORKER: &str = env!("CARGO_BIN_EXE_snakepit-test-worker");

fn config(size: usize, in_flight: usize, dir: &std::path::Path) -> PoolConfig {
    PoolConfig::builder()
        .size(size)
        .max_in_flight_per_worker(in_flight)
        .queue_size(1 << 20)
        .runtime_dir(dir)
        .build()
        .expect("valid config")
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    println!("{:<52} {:>14}", "measurement", "value");
    println!("{}", "-".repeat(67));

    let mut one_worker_ms = 0.0;
    for size in [1, 4, 16] {
        let mut samples = Vec::new();
        for _ in 0..7 {
            let started = Instant::now();
            let pool = Pool::start(LineAdapter::new(WORKER), config(size, 1, dir.path()))
                .await
                .expect("pool starts");
            samples.push(started.elapsed().as_secs_f64() * 1e3);
            pool.shutdown().await.expect("shutdown");
        }
        let ms = median(samples);
        if size == 1 {
            one_worker_ms = ms;
        }
        println!(
            "{:<52} {:>11.2} ms   ({:.2}x one worker)",
            format!("start {size:>2} workers, concurrent (median of 7)"),
            ms,
            ms / one_worker_ms
        );
    }

    // Sequential latency of one request through the pool.
    let pool = Pool::start(LineAdapter::new(WORKER), config(1, 1, dir.path()))
        .await
        .expect("pool starts");
    let mut latencies = Vec::new();
    for i in 0..3000 {
        let line = format!("echo {i}");
        let started = Instant::now();
        pool.execute(|c| async move { c.request(&line).await })
            .await
            .expect("pool")
            .expect("worker");
        latencies.push(started.elapsed().as_secs_f64() * 1e6);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "{:<52} {:>11.1} us   (p99 {:.1} us)",
        "sequential echo through the pool, p50",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    pool.shutdown().await.expect("shutdown");

    for (size, in_flight) in [(1, 1), (4, 1), (4, 16)] {
        let pool = Pool::start(
            LineAdapter::new(WORKER),
            config(size, in_flight, dir.path()),
        )
        .await
        .expect("pool starts");
        let requests = 20_000;
        let concurrency = 64;
        let started = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|t| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    for i in (t..requests).step_by(concurrency) {
                        let line = format!("echo {i}");
                        pool.execute(|c| async move { c.request(&line).await })
                            .await
                            .expect("pool")
                            .expect("worker");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        let rps = requests as f64 / started.elapsed().as_secs_f64();
        println!(
            "{:<52} {:>11.0} rps",
            format!("{size} worker(s), {in_flight} in flight each, 64 concurrent callers"),
            rps
        );
        pool.shutdown().await.expect("shutdown");
    }
}
