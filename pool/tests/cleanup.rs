//! Nothing is left running: graceful shutdown, drop, and the cleanup of workers whose owner was
//! killed with SIGKILL.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use snakepit::{Pool, registry};

const OWNER: &str = env!("CARGO_BIN_EXE_snakepit-test-owner");

/// Grandchildren of the workers: `sleep` processes in the workers' process groups.
async fn spawn_grandchildren(pool: &Pool<LineAdapter>, n: usize) -> Vec<u32> {
    let mut pids = Vec::new();
    for _ in 0..n {
        let pid = request(pool, "grandchild").await.unwrap().unwrap();
        pids.push(pid.parse().unwrap());
    }
    pids
}

#[tokio::test]
async fn shutdown_stops_every_worker_and_grandchild_and_leaves_no_registry_entry() {
    let (dir, config) = config(3);
    let events = dir.path().join("events");
    let pool = start(
        adapter().env("TEST_WORKER_EVENTS_FILE", events.display()),
        config,
    )
    .await;
    let workers: Vec<u32> = pool.workers().iter().map(|w| w.pid.unwrap()).collect();
    let grandchildren = spawn_grandchildren(&pool, 3).await;
    // A grandchild that has just been spawned can be unreadable in /proc for a moment.
    eventually(
        Duration::from_secs(5),
        "3 workers and 3 grandchildren",
        || snakepit::processes_of_run(pool.run_id()).len() == 6,
    )
    .await;
    assert!(pool.registry_file().exists());
    let file = pool.registry_file().to_owned();
    // Every worker busy (one request each), so a fourth checkout really waits in the queue.
    let mut busy = Vec::new();
    for _ in 0..3 {
        busy.push(pool.checkout().await.unwrap());
    }
    let waiting = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.checkout().await.map(drop) })
    };
    eventually(Duration::from_secs(5), "a checkout waits", || {
        pool.stats().queue_len == 1
    })
    .await;
    let shutting_down = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.shutdown().await })
    };
    assert!(matches!(
        waiting.await.unwrap(),
        Err(snakepit::PoolError::ShuttingDown)
    ));
    drop(busy);
    shutting_down.await.unwrap().unwrap();
    for pid in workers.iter().chain(&grandchildren) {
        eventually(Duration::from_secs(5), "process gone", || !alive(*pid)).await;
    }
    assert!(snakepit::processes_of_run(pool.run_id()).is_empty());
    assert!(!file.exists());
    assert!(registry::list_runs(dir.path()).is_empty());
    // Each worker obeyed the adapter's polite stop: it was not simply killed.
    let stops = std::fs::read_to_string(&events).unwrap_or_default();
    assert_eq!(
        stops.lines().filter(|l| *l == "stop").count(),
        3,
        "{stops:?}"
    );
    assert!(matches!(
        request(&pool, "echo late").await,
        Err(snakepit::PoolError::ShuttingDown)
    ));
    pool.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_worker_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let (dir, config) = config(1);
    let events = dir.path().join("events");
    let grace = Duration::from_millis(300);
    let pool = start(
        adapter()
            .env("TEST_WORKER_IGNORE_SIGTERM", 1)
            .env("TEST_WORKER_EVENTS_FILE", events.display()),
        config.grace_period(grace),
    )
    .await;
    // Make the polite stop fail too: a hung worker reads but never acts on `stop`.
    pool.execute(|c| async move { c.send("0 hang").await.unwrap() })
        .await
        .unwrap();
    let pid = pool.workers()[0].pid.unwrap();
    let started = std::time::Instant::now();
    pool.shutdown().await.unwrap();
    assert!(!alive(pid));
    // It got SIGTERM first, and the SIGKILL only after the grace period.
    let seen = std::fs::read_to_string(&events).unwrap_or_default();
    assert!(
        seen.lines().any(|l| l == "sigterm"),
        "SIGTERM came first: {seen:?}"
    );
    assert!(!seen.contains("stop"), "{seen:?}");
    assert!(started.elapsed() >= grace, "killed before the grace period");
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_workers() {
    let (dir, config) = config(2);
    let pool = start(adapter(), config).await;
    let run_id = pool.run_id().to_owned();
    let second_handle = pool.clone();
    drop(pool);
    assert_eq!(
        request(&second_handle, "echo alive")
            .await
            .unwrap()
            .unwrap(),
        "alive"
    );
    drop(second_handle);
    eventually(Duration::from_secs(10), "workers gone after drop", || {
        snakepit::processes_of_run(&run_id).is_empty()
    })
    .await;
    eventually(Duration::from_secs(10), "registry entry removed", || {
        registry::list_runs(dir.path()).is_empty()
    })
    .await;
}

struct Owner {
    child: Child,
    run_id: String,
    workers: Vec<u32>,
    grandchildren: Vec<u32>,
}

/// Starts a separate process that owns a pool of `size` workers in `runtime_dir`.
fn spawn_owner(runtime_dir: &std::path::Path, size: usize, death_signal: bool) -> Owner {
    let mut child = Command::new(OWNER)
        .arg(WORKER)
        .arg(runtime_dir)
        .arg(size.to_string())
        .arg(if death_signal { "on" } else { "off" })
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let (head, grandchildren) = line.trim().split_once(" / ").expect("owner's report");
    let mut head = head.split(' ');
    let run_id = head.next().unwrap().to_owned();
    let parse = |s: &str| s.parse::<u32>().unwrap();
    Owner {
        child,
        run_id,
        workers: head.map(parse).collect(),
        grandchildren: grandchildren.split(' ').map(parse).collect(),
    }
}

impl Owner {
    fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Owner {
    /// A failed test must not leave its owner (and so its workers) running.
    fn drop(&mut self) {
        self.sigkill();
        for &pid in self.workers.iter().chain(&self.grandchildren) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

#[tokio::test]
async fn workers_die_with_their_owner_and_the_stale_entry_is_cleaned_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut owner = spawn_owner(dir.path(), 3, true);
    assert_eq!(owner.workers.len(), 3);
    assert!(owner.workers.iter().all(|&pid| alive(pid)));
    owner.sigkill();
    // The parent-death signal takes the workers down with their owner...
    for &pid in &owner.workers {
        eventually(
            Duration::from_secs(5),
            "worker killed by parent-death signal",
            || !alive(pid),
        )
        .await;
    }
    // ...but nobody removed the owner's registry entry, and the grandchildren (which got no
    // parent-death signal) are still in the workers' process groups.
    let runs = registry::list_runs(dir.path());
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].1.as_ref().unwrap().run_id, owner.run_id);
    assert!(owner.grandchildren.iter().all(|&pid| alive(pid)));

    let report = registry::cleanup_orphans(dir.path());
    assert_eq!(report.runs_removed, vec![owner.run_id.clone()]);
    for &pid in &owner.grandchildren {
        eventually(Duration::from_secs(5), "grandchild killed", || !alive(pid)).await;
    }
    assert!(snakepit::processes_of_run(&owner.run_id).is_empty());
    assert!(registry::list_runs(dir.path()).is_empty());
}

#[tokio::test]
async fn a_new_pool_kills_the_orphans_of_a_dead_owner_and_spares_a_live_owners_workers() {
    let dir = tempfile::tempdir().unwrap();
    // Without the parent-death signal the workers outlive their owner: only the registry can
    // find them.
    let mut dead = spawn_owner(dir.path(), 2, false);
    let mut live = spawn_owner(dir.path(), 2, false);
    dead.sigkill();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        dead.workers.iter().all(|&pid| alive(pid)),
        "orphans survive their owner"
    );
    assert_eq!(registry::list_runs(dir.path()).len(), 2);

    let config = snakepit::PoolConfig::builder()
        .size(1)
        .runtime_dir(dir.path())
        .build()
        .unwrap();
    let pool = Pool::start(adapter(), config).await.unwrap();
    for &pid in dead.workers.iter().chain(&dead.grandchildren) {
        eventually(Duration::from_secs(5), "orphan killed", || !alive(pid)).await;
    }
    assert!(snakepit::processes_of_run(&dead.run_id).is_empty());
    assert!(
        live.workers
            .iter()
            .chain(&live.grandchildren)
            .all(|&pid| alive(pid))
    );
    let mut remaining: Vec<String> = registry::list_runs(dir.path())
        .into_iter()
        .map(|(_, r)| r.unwrap().run_id)
        .collect();
    remaining.sort();
    let mut expected = vec![live.run_id.clone(), pool.run_id().to_owned()];
    expected.sort();
    assert_eq!(remaining, expected);

    pool.shutdown().await.unwrap();
    // Now the other owner dies too; its orphans are found the same way.
    live.sigkill();
    let report = registry::cleanup_orphans(dir.path());
    assert_eq!(report.runs_removed, vec![live.run_id.clone()]);
    for &pid in live.workers.iter().chain(&live.grandchildren) {
        eventually(Duration::from_secs(5), "orphan killed", || !alive(pid)).await;
    }
    assert!(registry::list_runs(dir.path()).is_empty());
}
