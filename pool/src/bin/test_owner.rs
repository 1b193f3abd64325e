//! A program that owns a pool of test workers and then waits to be killed; the orphan-cleanup tests
//! `SIGKILL` it and check what becomes of its workers.
//!
//! Usage: `snakepit-test-owner WORKER_PROGRAM RUNTIME_DIR SIZE on|off`. With `off` the workers get
//! no parent-death signal and keep running after their standard input closes: orphans that only
//! the registry can find.
//! Prints one line, `<run id> <worker pid>... / <grandchild pid>...`, once the pool is ready.

#[path = "../../tests/support/line_adapter.rs"]
mod line_adapter;

use std::time::Duration;

use snakepit::{Pool, PoolConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, program, runtime_dir, size, death_signal] = args.as_slice() else {
        eprintln!("usage: snakepit-test-owner WORKER_PROGRAM RUNTIME_DIR SIZE on|off");
        std::process::exit(2);
    };
    let config = PoolConfig::builder()
        .size(size.parse().expect("SIZE is a number"))
        .runtime_dir(runtime_dir)
        .parent_death_signal(death_signal == "on")
        .build()
        .expect("valid config");
    let mut adapter = line_adapter::LineAdapter::new(program);
    if death_signal != "on" {
        adapter = adapter.env("TEST_WORKER_OUTLIVE_STDIN", 1);
    }
    let pool = Pool::start(adapter, config).await.expect("the pool starts");
    let workers: Vec<String> = pool
        .workers()
        .iter()
        .map(|w| w.pid.expect("a ready worker has a pid").to_string())
        .collect();
    let mut grandchildren = Vec::new();
    for _ in 0..workers.len() {
        let pid = pool
            .execute(|c| async move { c.request("grandchild").await })
            .await
            .expect("pool answers")
            .expect("worker answers");
        grandchildren.push(pid);
    }
    println!(
        "{} {} / {}",
        pool.run_id(),
        workers.join(" "),
        grandchildren.join(" ")
    );
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
