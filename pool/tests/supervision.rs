//! Workers that crash, hang, fail to start or keep failing, against real processes.

mod common;

use std::time::Duration;

use common::*;
use snakepit::{Affinity, Pool, PoolError, StartFailure, WorkerExit};

#[tokio::test]
async fn a_crash_mid_request_fails_every_request_in_flight_at_once_and_the_worker_is_replaced() {
    let (_dir, config) = config(1);
    let pool = start(adapter(), config.max_in_flight_per_worker(3)).await;
    let old_pid = pid_of_next(&pool).await;
    let long = {
        let pool = pool.clone();
        tokio::spawn(async move { request(&pool, "sleep 60000").await })
    };
    eventually(
        Duration::from_secs(5),
        "the long request is in flight",
        || pool.stats().in_flight == 1,
    )
    .await;
    let crash = request(&pool, "crash 7").await;
    for outcome in [crash, long.await.unwrap()] {
        match outcome {
            Err(PoolError::WorkerCrashed { worker, exit }) => {
                assert_eq!((worker.slot, worker.generation), (0, 0));
                assert_eq!(exit.status().and_then(|s| s.code()), Some(7), "{exit}");
            }
            other => panic!("expected WorkerCrashed, got {other:?}"),
        }
    }
    let message = PoolError::WorkerCrashed {
        worker: snakepit::WorkerId {
            slot: 0,
            generation: 0,
        },
        exit: WorkerExit::Exited(std::os::unix::process::ExitStatusExt::from_raw(7 << 8)),
    }
    .to_string();
    assert_eq!(
        message,
        "worker 0 (generation 0) exited with status 7 while serving the request"
    );

    pool.await_ready().await.unwrap();
    let new_pid = pid_of_next(&pool).await;
    assert_ne!(new_pid, old_pid);
    assert!(!alive(old_pid));
    let info = &pool.workers()[0];
    assert_eq!(info.id.generation, 1);
    assert_eq!(pool.stats().restarts, 1);
    pool.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_worker_killed_from_outside_is_replaced() {
    let (_dir, config) = config(2);
    let pool = start(adapter(), config).await;
    let victim = pool.workers()[1].pid.unwrap();
    send_signal(victim, libc::SIGKILL);
    eventually(Duration::from_secs(10), "slot 1 replaced", || {
        let w = &pool.workers()[1];
        w.ready && w.id.generation == 1
    })
    .await;
    assert_ne!(pool.workers()[1].pid.unwrap(), victim);
    assert_eq!(pool.stats().workers_ready, 2);
    pool.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stopped_worker_fails_its_health_check_and_is_replaced() {
    let (_dir, config) = config(1);
    let pool = start(
        adapter(),
        config
            .health_check_interval(Some(Duration::from_millis(100)))
            .health_check_timeout(Duration::from_millis(200))
            .request_timeout(None),
    )
    .await;
    let hung = pool.workers()[0].pid.unwrap();
    // SIGSTOP: the process lives but answers nothing.
    send_signal(hung, libc::SIGSTOP);
    let stuck = {
        let pool = pool.clone();
        tokio::spawn(async move { request(&pool, "echo are you there").await })
    };
    match stuck.await.unwrap() {
        Err(PoolError::WorkerCrashed {
            worker,
            exit: WorkerExit::HealthCheckFailed { reason },
        }) => {
            assert_eq!(worker.generation, 0);
            assert!(reason.contains("no answer within"), "{reason}");
        }
        other => panic!("expected a health-check failure, got {other:?}"),
    }
    pool.await_ready().await.unwrap();
    assert_ne!(pid_of_next(&pool).await, hung);
    eventually(Duration::from_secs(5), "the hung process is gone", || {
        !alive(hung)
    })
    .await;
    pool.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_worker_that_stops_answering_is_replaced() {
    let (_dir, config) = config(1);
    let pool = start(
        adapter(),
        config
            .health_check_interval(Some(Duration::from_millis(50)))
            .health_check_timeout(Duration::from_millis(100)),
    )
    .await;
    pool.execute(|c| async move { c.send("0 hang").await.unwrap() })
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "replaced after hanging", || {
        let w = &pool.workers()[0];
        // With checks this tight, a loaded machine may fail the replacement too: at least one.
        w.ready && w.id.generation >= 1
    })
    .await;
    assert_eq!(
        request(&pool, "echo fresh").await.unwrap().unwrap(),
        "fresh"
    );
    pool.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_restart_limit_stops_a_crash_loop() {
    let (_dir, config) = config(1);
    let config = config
        .max_restarts(3)
        .restart_window(Duration::from_secs(60))
        .restart_backoff(Duration::from_millis(10))
        .restart_backoff_max(Duration::from_millis(40))
        .build()
        .unwrap();
    let pool = Pool::spawn(adapter().env("TEST_WORKER_EXIT_AFTER_MS", 30), config).unwrap();
    eventually(Duration::from_secs(20), "the pool gives up", || {
        pool.stats().workers_stopped == 1
    })
    .await;
    let stats = pool.stats();
    assert_eq!(stats.restarts, 3);
    assert_eq!(pool.workers()[0].id.generation, 3, "1 start + 3 restarts");
    match request(&pool, "echo anyone").await {
        Err(PoolError::RestartLimitReached {
            max_restarts,
            within,
            last_failure,
        }) => {
            assert_eq!((max_restarts, within), (3, Duration::from_secs(60)));
            assert!(last_failure.contains("status 9"), "{last_failure}");
        }
        other => panic!("expected RestartLimitReached, got {other:?}"),
    }
    assert!(pool.await_ready().await.is_err());
    assert!(snakepit::processes_of_run(pool.run_id()).is_empty());
    pool.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_worker_that_fails_to_start_fails_the_start_with_its_stderr() {
    let (dir, config) = config(3);
    let err = Pool::start(
        adapter().env("TEST_WORKER_FAIL_START", 1),
        config.build().unwrap(),
    )
    .await
    .unwrap_err();
    match &err {
        PoolError::StartupFailed {
            exit:
                WorkerExit::StartFailed {
                    reason: StartFailure::Exited(status),
                    stderr_tail,
                },
            ..
        } => {
            assert_eq!(status.code(), Some(3));
            assert!(
                stderr_tail.contains("told to fail at start"),
                "{stderr_tail}"
            );
        }
        other => panic!("expected StartupFailed, got {other:?}"),
    }
    assert!(err.to_string().contains("told to fail at start"), "{err}");
    // Nothing left running and nothing left in the registry.
    assert!(snakepit::registry::list_runs(dir.path()).is_empty());
}

#[tokio::test]
async fn a_worker_that_is_never_ready_fails_the_start_after_the_startup_timeout() {
    let (dir, config) = config(2);
    let err = Pool::start(
        adapter().env("TEST_WORKER_START_DELAY_MS", 30_000),
        config
            .startup_timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
    )
    .await
    .unwrap_err();
    match err {
        PoolError::StartupFailed {
            exit:
                WorkerExit::StartFailed {
                    reason: StartFailure::Timeout(after),
                    ..
                },
            ..
        } => assert_eq!(after, Duration::from_millis(300)),
        other => panic!("expected a startup timeout, got {other:?}"),
    }
    assert!(snakepit::registry::list_runs(dir.path()).is_empty());
}

#[tokio::test]
async fn a_program_that_does_not_exist_is_a_spawn_error() {
    let (_dir, config) = config(1);
    let err = Pool::start(
        LineAdapter::new("/nonexistent/snakepit-worker"),
        config.build().unwrap(),
    )
    .await
    .unwrap_err();
    match err {
        PoolError::StartupFailed {
            exit:
                WorkerExit::StartFailed {
                    reason: StartFailure::Spawn { program, source },
                    ..
                },
            ..
        } => {
            assert_eq!(program, "/nonexistent/snakepit-worker");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected a spawn error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_session_whose_worker_died_is_told_so_until_it_is_ended() {
    let (_dir, config) = config(2);
    let pool = start(adapter(), config).await;
    let home = pool
        .execute_in_session("s1", Affinity::Strict, |c| async move { c.pid })
        .await
        .unwrap();
    let bound = pool.session_worker("s1").unwrap();
    send_signal(home, libc::SIGKILL);
    pool.execute(|_| async {}).await.unwrap();
    eventually(Duration::from_secs(10), "both workers ready again", || {
        pool.stats().workers_ready == 2 && pool.workers()[bound.slot].id.generation == 1
    })
    .await;
    for affinity in [Affinity::Strict, Affinity::Hint] {
        match pool
            .execute_in_session("s1", affinity, |c| async move { c.pid })
            .await
        {
            Err(PoolError::SessionWorkerLost {
                session,
                worker,
                exit,
            }) => {
                assert_eq!((session.as_str(), worker), ("s1", bound));
                assert_eq!(exit.signal(), Some(libc::SIGKILL));
            }
            other => panic!("expected SessionWorkerLost, got {other:?}"),
        }
    }
    assert!(pool.end_session("s1"));
    let new_home = pool
        .execute_in_session("s1", Affinity::Strict, |c| async move { c.pid })
        .await
        .unwrap();
    assert_ne!(new_home, home);
    pool.shutdown().await.unwrap();
}

#[tokio::test]
async fn strict_session_waiters_fail_when_their_worker_dies() {
    let (_dir, config) = config(2);
    let pool = start(adapter(), config.request_timeout(None)).await;
    let hold = pool
        .checkout_in_session("s2", Affinity::Strict)
        .await
        .unwrap();
    let pid = hold.connection().pid;
    let waiting = {
        let pool = pool.clone();
        tokio::spawn(async move {
            pool.execute_in_session("s2", Affinity::Strict, |c| async move { c.pid })
                .await
        })
    };
    eventually(Duration::from_secs(5), "the session call queues", || {
        pool.stats().queue_len == 1
    })
    .await;
    send_signal(pid, libc::SIGKILL);
    assert!(matches!(
        waiting.await.unwrap(),
        Err(PoolError::SessionWorkerLost { .. })
    ));
    drop(hold);
    pool.shutdown().await.unwrap();
}

fn send_signal(pid: u32, signal: i32) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}
