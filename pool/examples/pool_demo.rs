//! A pool of four workers serving a few thousand requests, with a crash in the middle.
//!
//! The workers are this same program started with `--worker`: a small line-protocol server (the one
//! the pool's tests use), so the demo needs nothing but Rust. Run it with
//! `cargo run -p snakepit --example pool_demo`.

#[path = "../tests/support/line_adapter.rs"]
mod line_adapter;
#[path = "../tests/support/line_worker.rs"]
mod line_worker;

use std::time::{Duration, Instant};

use line_adapter::LineAdapter;
use snakepit::{Affinity, Pool, PoolConfig, PoolError};

#[tokio::main]
async fn main() -> Result<(), PoolError> {
    if std::env::args().nth(1).as_deref() == Some("--worker") {
        line_worker::run();
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "snakepit=warn".into()),
        )
        .init();

    let program = std::env::current_exe().expect("the demo knows where it is");
    let mut adapter = LineAdapter::new(program);
    adapter.args.push("--worker".into());
    let config = PoolConfig::builder()
        .size(4)
        .max_in_flight_per_worker(8)
        .queue_size(8192)
        .health_check_interval(Some(Duration::from_secs(1)))
        .build()?;

    let started = Instant::now();
    let pool = Pool::start(adapter, config).await?;
    println!(
        "pool of {} workers ready in {:.1} ms (run id {})",
        pool.stats().size,
        started.elapsed().as_secs_f64() * 1e3,
        pool.run_id()
    );
    for worker in pool.workers() {
        println!("  {} pid {}", worker.id, worker.pid.unwrap_or_default());
    }

    let requests = 4000;
    let started = Instant::now();
    let tasks: Vec<_> = (0..requests)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let line = format!("echo hello {i}");
                pool.execute(|c| async move { c.request(&line).await })
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.expect("the task ran") {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(refused)) => println!("  the worker refused: {refused:?}"),
            Err(e) => println!("  pool error: {e}"),
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{ok}/{requests} echo requests in {:.1} ms: {:.0} requests/s",
        elapsed.as_secs_f64() * 1e3,
        f64::from(requests) / elapsed.as_secs_f64()
    );

    let home = pool
        .execute_in_session("demo-session", Affinity::Strict, |c| async move { c.pid })
        .await?;
    println!("session `demo-session` lives on pid {home}");

    println!("asking a worker to crash mid-request...");
    let crash = pool
        .execute(|c| async move { c.request("crash 42").await })
        .await;
    match crash {
        Err(e) => println!("  the request failed at once: {e}"),
        Ok(answer) => println!("  unexpected answer: {answer:?}"),
    }
    pool.await_ready().await?;
    println!(
        "  replaced: {} workers ready, {} restart(s)",
        pool.stats().workers_ready,
        pool.stats().restarts
    );

    let stats = pool.stats();
    println!(
        "stats: {} requests, {} pool errors, {} restarts",
        stats.requests, stats.errors, stats.restarts
    );
    pool.shutdown().await?;
    println!(
        "shut down; processes left for this run: {}",
        snakepit::processes_of_run(pool.run_id()).len()
    );
    Ok(())
}
