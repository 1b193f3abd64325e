//! Starting workers, spreading requests over them, the wait queue, timeouts and session affinity,
//! all against real worker processes.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use snakepit::{Affinity, PoolError};

#[tokio::test]
async fn workers_start_concurrently() {
    // Each worker waits, before saying ready, until all 16 have started. A pool that started them
    // one after another would wait for the first forever and fail its startup timeout.
    let barrier = tempfile::tempdir().unwrap();
    let adapter = adapter()
        .env("TEST_WORKER_BARRIER_DIR", barrier.path().display())
        .env("TEST_WORKER_BARRIER_COUNT", 16);
    let (_dir, config) = config(16);
    let pool = start(adapter, config).await;
    let stats = pool.stats();
    assert_eq!((stats.size, stats.workers_ready), (16, 16));
    let pids: HashSet<_> = pool.workers().iter().map(|w| w.pid.unwrap()).collect();
    assert_eq!(pids.len(), 16, "16 distinct processes");
    pool.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_requests_spread_over_workers_with_several_in_flight_each() {
    let (_dir, config) = config(4);
    let pool = start(
        adapter(),
        config.max_in_flight_per_worker(4).queue_size(1000),
    )
    .await;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..600 {
        let pool = pool.clone();
        let (in_flight, peak) = (in_flight.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            let checkout = pool.checkout().await.expect("a worker");
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let line = if i % 3 == 0 {
                "sleep 5".to_owned()
            } else {
                format!("echo request-{i}")
            };
            let answer = checkout
                .run(checkout.connection().request(&line))
                .await
                .expect("no pool error")
                .expect("worker answers");
            let pid = checkout.connection().pid as usize;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let expected = if i % 3 == 0 {
                "slept".to_owned()
            } else {
                format!("request-{i}")
            };
            assert_eq!(answer, expected);
            pid
        }));
    }
    let mut served_by = HashMap::<usize, usize>::new();
    for task in tasks {
        *served_by.entry(task.await.unwrap()).or_default() += 1;
    }
    assert_eq!(served_by.values().sum::<usize>(), 600);
    assert_eq!(
        served_by.len(),
        4,
        "every worker served requests: {served_by:?}"
    );
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak > 4,
        "more than one request in flight per worker (peak {peak})"
    );
    assert!(peak <= 16, "never more than 4 per worker (peak {peak})");
    let stats = pool.stats();
    assert_eq!(stats.requests, 600);
    assert_eq!(stats.errors, 0);
    assert_eq!((stats.in_flight, stats.queue_len), (0, 0));
    pool.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_worker_never_gets_more_than_its_in_flight_limit() {
    let (_dir, config) = config(2);
    let pool = start(adapter(), config.max_in_flight_per_worker(1)).await;
    let counts = Arc::new(std::sync::Mutex::new(HashMap::<u32, (usize, usize)>::new()));
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (pool, counts) = (pool.clone(), counts.clone());
            tokio::spawn(async move {
                pool.execute(|c| async move {
                    {
                        let mut counts = counts.lock().unwrap();
                        let (now, peak) = counts.entry(c.pid).or_default();
                        *now += 1;
                        *peak = (*peak).max(*now);
                    }
                    c.request("sleep 2").await.unwrap();
                    counts.lock().unwrap().get_mut(&c.pid).unwrap().0 -= 1;
                })
                .await
                .unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let counts = counts.lock().unwrap();
    assert_eq!(counts.len(), 2);
    assert!(counts.values().all(|&(_, peak)| peak == 1), "{counts:?}");
}

#[tokio::test]
async fn a_full_queue_refuses_at_once() {
    let (_dir, config) = config(1);
    let pool = start(adapter(), config.queue_size(2)).await;
    let held = pool.checkout().await.unwrap();
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { request(&pool, "echo queued").await })
        })
        .collect();
    eventually(Duration::from_secs(5), "two requests queued", || {
        pool.stats().queue_len == 2
    })
    .await;
    match request(&pool, "echo one too many").await {
        Err(PoolError::QueueFull { capacity: 2 }) => {}
        other => panic!("expected QueueFull, got {other:?}"),
    }
    drop(held);
    for task in waiting {
        assert_eq!(task.await.unwrap().unwrap().unwrap(), "queued");
    }
    assert_eq!(pool.stats().errors, 1);
    pool.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_request_that_waits_too_long_for_a_worker_times_out_and_leaves_the_queue() {
    let (_dir, config) = config(1);
    let pool = start(adapter(), config.queue_timeout(Duration::from_millis(100))).await;
    let held = pool.checkout().await.unwrap();
    match request(&pool, "echo late").await {
        Err(PoolError::QueueTimeout { waited }) => assert_eq!(waited, Duration::from_millis(100)),
        other => panic!("expected QueueTimeout, got {other:?}"),
    }
    assert_eq!(pool.stats().queue_len, 0);
    drop(held);
    assert_eq!(
        request(&pool, "echo after").await.unwrap().unwrap(),
        "after"
    );
    pool.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_cancelled_waiter_gives_its_place_back() {
    let (_dir, config) = config(1);
    let pool = start(adapter(), config.queue_size(1)).await;
    let held = pool.checkout().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { request(&pool, "echo never").await })
    };
    eventually(Duration::from_secs(5), "one waiter", || {
        pool.stats().queue_len == 1
    })
    .await;
    waiter.abort();
    eventually(Duration::from_secs(5), "the queue empties", || {
        pool.stats().queue_len == 0
    })
    .await;
    drop(held);
    assert_eq!(request(&pool, "echo next").await.unwrap().unwrap(), "next");
    assert_eq!(pool.stats().in_flight, 0);
    pool.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_slow_request_times_out_with_the_worker_named_and_the_worker_keeps_serving() {
    let (_dir, config) = config(1);
    let pool = start(
        adapter(),
        config.request_timeout(Some(Duration::from_millis(200))),
    )
    .await;
    match request(&pool, "sleep 3000").await {
        Err(PoolError::RequestTimeout { worker, after }) => {
            assert_eq!((worker.slot, worker.generation), (0, 0));
            assert_eq!(after, Duration::from_millis(200));
        }
        other => panic!("expected RequestTimeout, got {other:?}"),
    }
    assert_eq!(
        request(&pool, "echo still here").await.unwrap().unwrap(),
        "still here"
    );
    assert_eq!(pool.stats().restarts, 0);
    pool.shutdown().await.unwrap();
}

#[tokio::test]
async fn strict_sessions_stay_on_their_worker_and_wait_for_it() {
    let (_dir, config) = config(2);
    let pool = start(adapter(), config).await;
    let pid_in = |session: &'static str| {
        let pool = pool.clone();
        async move {
            pool.execute_in_session(session, Affinity::Strict, |c| async move { c.pid })
                .await
                .unwrap()
        }
    };
    let home = pid_in("alpha").await;
    for _ in 0..10 {
        assert_eq!(pid_in("alpha").await, home);
    }
    let bound = pool.session_worker("alpha").unwrap();
    // Hold the session's worker; a second call in the session waits for it, and meanwhile
    // requests without a session go to the other worker.
    let hold = pool
        .checkout_in_session("alpha", Affinity::Strict)
        .await
        .unwrap();
    assert_eq!(hold.worker(), bound);
    let queued = tokio::spawn(pid_in("alpha"));
    eventually(Duration::from_secs(5), "the session call queues", || {
        pool.stats().queue_len == 1
    })
    .await;
    assert_ne!(pid_of_next(&pool).await, home);
    drop(hold);
    assert_eq!(queued.await.unwrap(), home);
    pool.shutdown().await.unwrap();
}

#[tokio::test]
async fn hint_sessions_fall_back_to_another_worker_when_theirs_is_busy() {
    let (_dir, config) = config(2);
    let pool = start(adapter(), config).await;
    let home = pool
        .execute_in_session("beta", Affinity::Hint, |c| async move { c.pid })
        .await
        .unwrap();
    let hold = pool
        .checkout_in_session("beta", Affinity::Hint)
        .await
        .unwrap();
    assert_eq!(hold.connection().pid, home);
    let elsewhere = pool
        .execute_in_session("beta", Affinity::Hint, |c| async move { c.pid })
        .await
        .unwrap();
    assert_ne!(elsewhere, home, "ran on the free worker instead of waiting");
    drop(hold);
    let back = pool
        .execute_in_session("beta", Affinity::Hint, |c| async move { c.pid })
        .await
        .unwrap();
    assert_eq!(back, home, "the binding did not move");
    pool.shutdown().await.unwrap();
}

#[tokio::test]
async fn different_sessions_spread_over_workers() {
    let (_dir, config) = config(3);
    let pool = start(adapter(), config).await;
    let mut homes = HashSet::new();
    for session in ["a", "b", "c"] {
        homes.insert(
            pool.execute_in_session(session, Affinity::Strict, |c| async move { c.pid })
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        homes.len(),
        3,
        "each new session went to the least-loaded worker"
    );
    assert_eq!(pool.stats().sessions, 3);
    assert!(pool.end_session("a"));
    assert!(!pool.end_session("a"));
    assert_eq!(pool.stats().sessions, 2);
    pool.shutdown().await.unwrap();
}
