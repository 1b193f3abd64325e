//! Worker recycling under load: workers past `max_requests`, `max_age` or `max_memory` finish
//! their requests and are replaced, and no request fails because of it. Real processes.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use snakepit::{Affinity, Pool, RecycleReason, WorkerExit};

/// `n` concurrent requests of `sleep_ms` each, returning the pids that served them; every one
/// must succeed.
async fn load(pool: &Pool<LineAdapter>, n: usize, sleep_ms: u64) -> BTreeSet<u32> {
    let requests: Vec<_> = (0..n)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let slept = request(&pool, &format!("sleep {sleep_ms}")).await;
                assert!(
                    matches!(&slept, Ok(Ok(answer)) if answer == "slept"),
                    "request {i} failed: {slept:?}"
                );
                pid_of_next(&pool).await
            })
        })
        .collect();
    let mut pids = BTreeSet::new();
    for request in requests {
        pids.insert(request.await.unwrap());
    }
    pids
}

#[tokio::test]
async fn workers_past_max_requests_are_replaced_and_no_request_fails() {
    let (_dir, config) = config(2);
    let pool = start(
        adapter(),
        config
            .max_in_flight_per_worker(3)
            .max_requests(Some(10))
            .queue_timeout(Duration::from_secs(60)),
    )
    .await;
    // 300 requests (a sleep and a pid each) at 30 at once over 2 workers of 10 requests each.
    let mut pids = BTreeSet::new();
    for _ in 0..10 {
        pids.extend(load(&pool, 15, 5).await);
    }
    let stats = pool.stats();
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(stats.restarts, 0, "recycling is not restarting: {stats:?}");
    // 300 requests + a few more for readiness: at least 300 / 10 - 2 generations were retired.
    assert!(stats.recycles >= 28, "{stats:?}");
    assert!(
        pids.len() >= 20,
        "requests were served by {} processes",
        pids.len()
    );
    for pid in &pids {
        eventually(Duration::from_secs(10), "retired workers exit", || {
            !alive(*pid) || pool.workers().iter().any(|w| w.pid == Some(*pid))
        })
        .await;
    }
    let retired = pool
        .workers()
        .iter()
        .filter_map(|w| w.previous_exit.clone())
        .filter(|exit| matches!(exit, WorkerExit::Recycled(RecycleReason::MaxRequests(10))))
        .count();
    assert_eq!(retired, 2, "{:?}", pool.workers());
    pool.shutdown().await.unwrap();
}

#[tokio::test]
async fn workers_past_max_age_are_replaced_while_serving() {
    let (_dir, config) = config(2);
    let pool = start(
        adapter(),
        config
            .max_in_flight_per_worker(2)
            .max_age(Some(Duration::from_millis(300))),
    )
    .await;
    let first: BTreeSet<u32> = pool.workers().iter().filter_map(|w| w.pid).collect();
    let mut pids = BTreeSet::new();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        pids.extend(load(&pool, 8, 20).await);
    }
    let stats = pool.stats();
    assert_eq!((stats.errors, stats.restarts), (0, 0), "{stats:?}");
    assert!(stats.recycles >= 4, "{stats:?}");
    assert!(
        first.iter().all(|pid| !alive(*pid)),
        "the first workers are gone"
    );
    assert!(pids.len() >= 4, "{pids:?}");
    pool.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_worker_over_max_memory_is_replaced_after_its_request() {
    let (_dir, config) = config(1);
    let pool = start(
        adapter(),
        config
            .max_in_flight_per_worker(4)
            .max_memory(Some(64 << 20))
            .memory_check_interval(Duration::from_millis(50)),
    )
    .await;
    let old = pid_of_next(&pool).await;
    // Grows past the limit while other requests run on it: they all finish.
    let busy = {
        let pool = pool.clone();
        tokio::spawn(async move { load(&pool, 3, 300).await })
    };
    let grown = request(&pool, "grow 128").await.unwrap().unwrap();
    assert_eq!(grown, (128usize << 20).to_string());
    busy.await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the grown worker is replaced",
        || pool.stats().recycles == 1 && pool.workers()[0].ready,
    )
    .await;
    assert!(!alive(old));
    let new = pid_of_next(&pool).await;
    assert_ne!(new, old);
    match &pool.workers()[0].previous_exit {
        Some(WorkerExit::Recycled(RecycleReason::MaxMemory { rss_bytes, limit })) => {
            assert_eq!(*limit, 64 << 20);
            assert!(*rss_bytes > 64 << 20, "{rss_bytes}");
        }
        other => panic!("recycled for its memory, got {other:?}"),
    }
    let stats = pool.stats();
    assert_eq!((stats.errors, stats.restarts), (0, 0), "{stats:?}");
    pool.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_strict_session_keeps_its_retiring_worker_until_it_ends() {
    let (_dir, config) = config(2);
    let pool = start(adapter(), config.max_requests(Some(2))).await;
    let in_session = |pool: Pool<LineAdapter>| async move {
        pool.execute_in_session("s", Affinity::Strict, |c| async move {
            c.request("pid").await.unwrap()
        })
        .await
        .unwrap()
    };
    let pid = in_session(pool.clone()).await;
    // Past its 2 requests, the worker still serves its session, and nothing else.
    for _ in 0..5 {
        assert_eq!(in_session(pool.clone()).await, pid);
    }
    assert_eq!(pool.stats().workers_retiring, 1, "{:?}", pool.stats());
    for _ in 0..6 {
        assert_ne!(pid_of_next(&pool).await.to_string(), pid);
    }
    assert!(alive(pid.parse().unwrap()));
    assert!(pool.end_session("s"));
    eventually(
        Duration::from_secs(10),
        "the worker retires once its session ends",
        || !alive(pid.parse().unwrap()),
    )
    .await;
    assert_eq!(pool.stats().restarts, 0);
    pool.shutdown().await.unwrap();
}
