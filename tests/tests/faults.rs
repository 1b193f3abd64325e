#![allow(missing_docs)]
//! Fault injection with real Python workers: crashes and hangs under load, owners killed over and
//! over, workers that keep dying, and a broken LM provider behind a circuit breaker.

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dspex::prelude::*;
use dspex::snakepit_grpc_bridge::snakepit::{self, WorkerExit};
use dspex::snakepit_grpc_bridge::{
    BridgeError, CircuitBreakerConfig, PoolError, RetryPolicy, Value,
};
use dspex::{Dspex, Error};
use support::{
    QA, QAInput, QAOutput, alive, ask, builder, eventually, faulty_lm, kill, numbered_answers, run,
};

/// The pid of the Python process that serves a worker (with the fork server, the pool's own
/// process for the slot is the shim; the server is its forked sibling).
async fn some_worker_pid(dspex: &Dspex) -> u32 {
    dspex.bridge().ping().await.expect("a worker answers").pid
}

fn is_crash(error: &Error) -> bool {
    matches!(
        error,
        Error::Bridge(BridgeError::Pool(PoolError::WorkerCrashed { .. }))
    )
}

/// How many LM requests the workers made, from a `FaultyLM` `count_file`.
fn lm_requests(count_file: &std::path::Path) -> usize {
    std::fs::read_to_string(count_file)
        .map(|c| c.lines().count())
        .unwrap_or(0)
}

/// 100 concurrent typed predictions, one worker SIGKILLed while they are in flight. Returns the
/// results in order and the killed pid.
async fn hundred_calls_with_a_kill(
    dspex: &Dspex,
    count_file: &std::path::Path,
) -> (Vec<Result<QAOutput, Error>>, u32) {
    let victim = some_worker_pid(dspex).await;
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let dspex = dspex.clone();
            tokio::spawn(async move { QA::predict(&dspex, ask(i)).await })
        })
        .collect();
    // Every call waits 1 s in the LM: once 100 requests reached it, the kill lands while the
    // calls are in flight.
    assert!(
        eventually(Duration::from_secs(30), || lm_requests(count_file) >= 100).await,
        "the calls reached the LM"
    );
    kill(victim, libc::SIGKILL);
    let mut results = Vec::new();
    for call in calls {
        let result = tokio::time::timeout(Duration::from_secs(60), call)
            .await
            .expect("no call hangs")
            .expect("the task does not panic");
        results.push(result);
    }
    (results, victim)
}

/// Two workers whose LM takes 1 s per call and counts its requests in `count_file`, with
/// `retry` if given.
async fn slow_pool(retry: Option<RetryPolicy>, count_file: &std::path::Path) -> Dspex {
    builder()
        .lm(faulty_lm(
            numbered_answers(120),
            &[
                ("delay_ms", Value::from(1000.0)),
                ("count_file", Value::from(count_file.to_str().unwrap())),
            ],
        ))
        .workers(2)
        .bridge(|b| match retry {
            Some(policy) => b.retry(policy),
            None => b,
        })
        .start()
        .await
        .unwrap()
}

/// Waits until no process of the run is left (after its shutdown).
async fn assert_nothing_left(run_id: &str) {
    assert!(
        eventually(Duration::from_secs(10), || snakepit::processes_of_run(
            run_id
        )
        .is_empty())
        .await,
        "processes of the run are left over: {:?}",
        snakepit::processes_of_run(run_id)
    );
}

/// Waits until every worker of the pool is ready again.
async fn wait_full(dspex: &Dspex) {
    let pool = dspex.bridge().pool();
    let size = pool.config().size;
    assert!(
        eventually(Duration::from_secs(30), || pool.stats().workers_ready
            == size)
        .await,
        "the pool is back to full size: {:?}",
        pool.stats()
    );
}

#[test]
fn sigkill_during_100_concurrent_calls_every_call_returns_and_the_pool_recovers() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let count_file = dir.path().join("requests");
        let dspex = slow_pool(None, &count_file).await;
        let (results, victim) = hundred_calls_with_a_kill(&dspex, &count_file).await;
        let mut crashed = 0;
        for (i, result) in results.iter().enumerate() {
            match result {
                Ok(output) => assert_eq!(output.answer, format!("a{i}")),
                Err(e) if is_crash(e) => {
                    crashed += 1;
                    let Error::Bridge(BridgeError::Pool(PoolError::WorkerCrashed { exit, .. })) = e
                    else {
                        unreachable!()
                    };
                    assert_eq!(
                        exit.signal(),
                        Some(libc::SIGKILL),
                        "the error names the kill: {e}"
                    );
                }
                Err(e) => panic!("call {i}: expected success or a crash error, got {e}"),
            }
        }
        assert!(crashed > 0, "the kill hit calls in flight");
        assert!(crashed < 100, "the other worker's calls succeeded");
        assert!(!alive(victim));
        wait_full(&dspex).await;
        assert_eq!(dspex.bridge().pool().stats().restarts, 1);
        for i in 0..20 {
            assert_eq!(
                QA::predict(&dspex, ask(i)).await.unwrap().answer,
                format!("a{i}")
            );
        }
        eprintln!("SIGKILL under load: {crashed} of 100 calls got WorkerCrashed, 0 hung");
        dspex.shutdown().await.unwrap();
    });
}

/// A `slow_pool` with `RetryPolicy::new(4)` (20 ms first backoff), and the file that counts its
/// LM requests (in a directory that lives as long as the returned guard).
async fn retrying_slow_pool() -> (Dspex, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let count_file = dir.path().join("requests");
    let policy = RetryPolicy::new(4).initial_backoff(Duration::from_millis(20));
    (slow_pool(Some(policy), &count_file).await, count_file, dir)
}

#[test]
fn the_retry_policy_turns_those_crashes_into_successes() {
    run(async {
        let (dspex, count_file, _dir) = retrying_slow_pool().await;
        let (results, victim) = hundred_calls_with_a_kill(&dspex, &count_file).await;
        for (i, result) in results.into_iter().enumerate() {
            let output = result.unwrap_or_else(|e| panic!("call {i} was retried, yet: {e}"));
            assert_eq!(output.answer, format!("a{i}"), "answers are not mixed up");
        }
        // The calls that died with the worker were sent again: more LM requests than calls.
        let requests = lm_requests(&count_file);
        assert!(
            requests > 100,
            "retries happened: {requests} LM requests for 100 calls"
        );
        eprintln!("retry under SIGKILL: 100 of 100 calls succeeded with {requests} LM requests");
        assert!(!alive(victim));
        assert_eq!(
            dspex.bridge().pool().stats().restarts,
            1,
            "a worker did die"
        );
        dspex.shutdown().await.unwrap();
    });
}

#[test]
fn a_sigstopped_worker_is_found_by_health_checks_timed_out_and_replaced() {
    run(async {
        let interval = Duration::from_millis(500);
        let dspex = builder()
            .lm(faulty_lm(numbered_answers(40), &[]))
            .workers(1)
            .bridge(|b| {
                b.pool(|p| {
                    p.health_check_interval(Some(interval))
                        .health_check_timeout(Duration::from_millis(500))
                        .request_timeout(Some(Duration::from_secs(1)))
                })
            })
            .start()
            .await
            .unwrap();
        let pool = dspex.bridge().pool().clone();
        let victim = some_worker_pid(&dspex).await;
        let stopped_at = Instant::now();
        kill(victim, libc::SIGSTOP);
        // A call on the hung worker ends with a typed error, not a hang.
        let error = QA::predict(&dspex, ask(1)).await.unwrap_err();
        assert!(
            matches!(
                error,
                Error::Bridge(BridgeError::Pool(
                    PoolError::RequestTimeout { .. } | PoolError::WorkerCrashed { .. }
                ))
            ),
            "a typed timeout or crash error, got {error}"
        );
        // The health check finds it (and nothing else: the slot's process ended because it
        // failed its health check).
        let detected = eventually(Duration::from_secs(30), || {
            pool.workers()[0]
                .previous_exit
                .as_ref()
                .is_some_and(|e| matches!(e, WorkerExit::HealthCheckFailed { .. }))
        })
        .await;
        let detection = stopped_at.elapsed();
        assert!(
            detected,
            "the stopped worker was never found by a health check: {:?}",
            pool.workers()[0]
        );
        // The stopped process itself is killed, not left behind stopped.
        assert!(
            eventually(Duration::from_secs(10), || !alive(victim)).await,
            "the stopped worker {victim} is still there"
        );
        wait_full(&dspex).await;
        assert_eq!(QA::predict(&dspex, ask(2)).await.unwrap().answer, "a2");
        eprintln!("SIGSTOP: found and replaced in {detection:?} (interval {interval:?})");
        dspex.shutdown().await.unwrap();
    });
}

#[test]
fn sigkill_of_the_owner_50_times_leaves_no_process_and_no_registry_entry() {
    let runtime_dir = tempfile::tempdir().unwrap();
    let owner = env!("CARGO_BIN_EXE_bridge-owner");
    let mut run_ids = BTreeSet::new();
    let started = Instant::now();
    for round in 0..50 {
        let mode = if round % 2 == 0 { "fork" } else { "spawn" };
        let mut child = Command::new(owner)
            .arg(runtime_dir.path())
            .arg(mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let run_id = line
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("round {round}: the owner did not start: {line:?}"))
            .trim()
            .to_owned();
        let before = snakepit::processes_of_run(&run_id);
        assert!(
            before.len() >= 2,
            "round {round} ({mode}): the run's processes carry its id: {before:?}"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        let gone = run(eventually(Duration::from_secs(10), || {
            snakepit::processes_of_run(&run_id).is_empty()
        }));
        assert!(
            gone,
            "round {round} ({mode}): processes of run {run_id} survived their owner: {:?}",
            snakepit::processes_of_run(&run_id)
        );
        run_ids.insert(run_id);
    }
    // Each start cleaned up the registry entries of the dead owners before it; the last entry
    // goes with the next start, here a cleanup.
    let left = snakepit::registry::list_runs(runtime_dir.path());
    assert!(left.len() <= 1, "stale registry entries: {left:?}");
    snakepit::registry::cleanup_orphans(runtime_dir.path());
    assert!(snakepit::registry::list_runs(runtime_dir.path()).is_empty());
    assert_eq!(run_ids.len(), 50);
    for run_id in &run_ids {
        assert!(snakepit::processes_of_run(run_id).is_empty());
    }
    eprintln!(
        "50 owner kills (fork server and plain spawn alternating): 0 surviving processes, 0 stale entries, {:?}",
        started.elapsed()
    );
}

#[test]
fn a_worker_that_keeps_dying_stops_at_the_restart_intensity_limit() {
    run(async {
        let starts = tempfile::NamedTempFile::new().unwrap();
        let result = builder()
            .import("dspex_dying_worker")
            .workers(1)
            .bridge(|b| {
                b.env("DSPEX_TEST_DIE_AFTER_MS", "300")
                    .env("DSPEX_TEST_STARTS_FILE", starts.path().to_str().unwrap())
                    .pool(|p| {
                        p.max_restarts(3)
                            .restart_window(Duration::from_secs(60))
                            .restart_backoff(Duration::from_millis(10))
                    })
            })
            .start()
            .await;
        // It starts fine, then dies every 300 ms.
        let dspex = result.expect("the first start succeeds");
        let pool = dspex.bridge().pool().clone();
        let gave_up = eventually(Duration::from_secs(30), || {
            pool.stats().workers_stopped == 1
        })
        .await;
        assert!(gave_up, "the pool gave up restarting: {:?}", pool.stats());
        let error = QA::predict(&dspex, ask(0)).await.unwrap_err();
        assert!(
            matches!(
                error,
                Error::Bridge(BridgeError::Pool(PoolError::RestartLimitReached { .. }))
            ),
            "a typed error says the pool gave up: {error}"
        );
        // And it stays given up: no further starts.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let count = std::fs::read_to_string(starts.path())
            .unwrap()
            .lines()
            .count();
        assert_eq!(
            count, 4,
            "the first start and max_restarts (3) restarts, no more"
        );
        // Nothing of the given-up worker runs: the only process of the run left is the fork
        // server, which stays for the pool's lifetime.
        let run_id = pool.run_id().to_owned();
        let fork_server = pool.adapter().fork_server_pid();
        assert!(
            fork_server.is_some(),
            "workers come from a fork server here"
        );
        assert_eq!(
            snakepit::processes_of_run(&run_id),
            fork_server.into_iter().collect::<Vec<_>>(),
            "only the fork server is left"
        );
        dspex.shutdown().await.unwrap();
        assert_nothing_left(&run_id).await;
    });
}

#[test]
fn a_circuit_breaker_turns_a_broken_provider_into_one_probe_per_interval() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let fail_file = dir.path().join("provider-down");
        let count_file = dir.path().join("requests");
        std::fs::write(&fail_file, "").unwrap();
        let open_for = Duration::from_millis(600);
        let dspex = builder()
            .lm(faulty_lm(
                numbered_answers(10),
                &[
                    ("fail_file", Value::from(fail_file.to_str().unwrap())),
                    ("count_file", Value::from(count_file.to_str().unwrap())),
                ],
            ))
            .workers(2)
            .bridge(|b| {
                b.circuit_breaker(CircuitBreakerConfig::new(3, open_for))
                    .retry(RetryPolicy::new(3))
            })
            .start()
            .await
            .unwrap();
        let lm_requests = || lm_requests(&count_file);
        let mut python_errors = 0;
        let mut open_errors = 0;
        for i in 0..30 {
            match QA::predict(&dspex, ask(i % 10)).await.unwrap_err() {
                Error::Bridge(BridgeError::Python(e)) => {
                    assert!(e.message.contains("unreachable"), "{e}");
                    python_errors += 1;
                }
                Error::Bridge(BridgeError::Pool(PoolError::CircuitOpen {
                    consecutive_failures,
                    ..
                })) => {
                    assert_eq!(consecutive_failures, 3);
                    open_errors += 1;
                }
                other => panic!("unexpected error {other}"),
            }
        }
        assert_eq!((python_errors, open_errors), (3, 27));
        assert_eq!(
            lm_requests(),
            3,
            "the open circuit sent nothing to the provider"
        );
        // After the open time one probe goes through; it fails, and the circuit opens again.
        tokio::time::sleep(open_for + Duration::from_millis(100)).await;
        assert!(matches!(
            QA::predict(&dspex, ask(1)).await.unwrap_err(),
            Error::Bridge(BridgeError::Python(_))
        ));
        assert!(matches!(
            QA::predict(&dspex, ask(1)).await.unwrap_err(),
            Error::Bridge(BridgeError::Pool(PoolError::CircuitOpen { .. }))
        ));
        assert_eq!(lm_requests(), 4);
        // The provider recovers: the next probe succeeds and closes the circuit.
        std::fs::remove_file(&fail_file).unwrap();
        tokio::time::sleep(open_for + Duration::from_millis(100)).await;
        for i in 0..10 {
            assert_eq!(
                QA::predict(&dspex, ask(i)).await.unwrap().answer,
                format!("a{i}")
            );
        }
        assert!(matches!(
            dspex.bridge().pool().circuit_state(),
            Some(snakepit::CircuitState::Closed {
                consecutive_failures: 0
            })
        ));
        dspex.shutdown().await.unwrap();
    });
}

/// The pid of the run's fork server, found through /proc (command line and run id).
fn fork_server_of(run_id: &str) -> Option<u32> {
    snakepit::processes_of_run(run_id).into_iter().find(|&pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains("snakepit_bridge.forkserver"))
            .unwrap_or(false)
    })
}

#[test]
fn sigkill_of_the_fork_server_under_load_the_pool_serves_again_and_nothing_is_left() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let count_file = dir.path().join("requests");
        let dspex = builder()
            .lm(faulty_lm(
                numbered_answers(60),
                &[
                    ("delay_ms", Value::from(300.0)),
                    ("count_file", Value::from(count_file.to_str().unwrap())),
                ],
            ))
            .workers(2)
            .start()
            .await
            .unwrap();
        let pool = dspex.bridge().pool().clone();
        let run_id = pool.run_id().to_owned();
        let fork_server = fork_server_of(&run_id).expect("the run has a fork server");
        // The two forked workers (pings go to the least-loaded one; ask until both answered).
        let mut workers = BTreeSet::new();
        for _ in 0..200 {
            workers.insert(some_worker_pid(&dspex).await);
            if workers.len() == 2 {
                break;
            }
        }
        assert_eq!(workers.len(), 2, "both workers answered");
        let calls: Vec<_> = (0..40)
            .map(|i| {
                let dspex = dspex.clone();
                tokio::spawn(async move { QA::predict(&dspex, ask(i)).await })
            })
            .collect();
        assert!(
            eventually(Duration::from_secs(30), || lm_requests(&count_file) >= 10).await,
            "calls reached the LM"
        );
        kill(fork_server, libc::SIGKILL);
        let killed_at = Instant::now();
        let mut crashed = 0;
        for (i, call) in calls.into_iter().enumerate() {
            let result = tokio::time::timeout(Duration::from_secs(60), call)
                .await
                .expect("no call hangs")
                .unwrap();
            match result {
                Ok(output) => assert_eq!(output.answer, format!("a{i}")),
                Err(e) if is_crash(&e) => crashed += 1,
                Err(e) => panic!("call {i}: expected success or a crash error, got {e}"),
            }
        }
        assert!(crashed > 0, "the workers died with their fork server");
        for &pid in &workers {
            assert!(
                eventually(Duration::from_secs(10), || !alive(pid)).await,
                "worker {pid} outlived its fork server"
            );
        }
        // Served again within a bounded time, by workers of a new fork server.
        let back = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                if let Ok(out) = QA::predict(&dspex, ask(1)).await {
                    return out;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the pool serves again within 60 s");
        let recovery = killed_at.elapsed();
        assert_eq!(back.answer, "a1");
        wait_full(&dspex).await;
        for i in 0..20 {
            assert_eq!(
                QA::predict(&dspex, ask(i)).await.unwrap().answer,
                format!("a{i}")
            );
        }
        let new_fork_server = fork_server_of(&run_id).expect("a fork server runs again");
        assert_ne!(new_fork_server, fork_server);
        assert!(!alive(fork_server));
        let stats = pool.stats();
        assert_eq!(stats.workers_stopped, 0, "no worker gave up: {stats:?}");
        dspex.shutdown().await.unwrap();
        assert_nothing_left(&run_id).await;
        eprintln!(
            "fork server SIGKILLed under load: {crashed} of 40 calls got WorkerCrashed, the pool served again after {recovery:?} with a new fork server, 0 processes left"
        );
    });
}

#[test]
fn an_oversized_result_is_a_typed_error_and_the_worker_keeps_serving() {
    run(async {
        let mut answers = numbered_answers(3);
        answers.insert(
            "<big>".to_owned(),
            Value::Map(
                [("answer".to_owned(), Value::from("x".repeat(2 << 20)))]
                    .into_iter()
                    .collect(),
            ),
        );
        let dspex = builder()
            .lm(faulty_lm(answers, &[]))
            .workers(1)
            .bridge(|b| b.max_message_bytes(1 << 20))
            .start()
            .await
            .unwrap();
        let pid = some_worker_pid(&dspex).await;
        let error = QA::predict(
            &dspex,
            QAInput {
                question: "<big>".into(),
            },
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                &error,
                Error::Bridge(BridgeError::ResultTooLarge { message }) if message.contains("bytes")
            ),
            "a typed error, got {error}"
        );
        for i in 0..3 {
            assert_eq!(
                QA::predict(&dspex, ask(i)).await.unwrap().answer,
                format!("a{i}")
            );
        }
        assert_eq!(some_worker_pid(&dspex).await, pid, "the same worker serves");
        assert_eq!(dspex.bridge().pool().stats().restarts, 0);
        dspex.shutdown().await.unwrap();
    });
}

#[test]
fn a_broken_fast_path_fails_the_health_check_and_the_worker_is_replaced() {
    run(async {
        let dspex = builder()
            .lm(faulty_lm(numbered_answers(5), &[]))
            .import("dspex_break_fast_path")
            .workers(1)
            .bridge(|b| b.pool(|p| p.health_check_interval(Some(Duration::from_millis(300)))))
            .start()
            .await
            .unwrap();
        let pool = dspex.bridge().pool().clone();
        assert_eq!(QA::predict(&dspex, ask(0)).await.unwrap().answer, "a0");
        let pid = some_worker_pid(&dspex).await;
        let session = dspex.bridge().create_session().await.unwrap();
        let broken = session
            .call_tool("break_fast_path", Default::default())
            .await
            .unwrap();
        assert_eq!(
            broken,
            Value::Int(1),
            "the worker had one fast-path connection"
        );
        // The pool notices and replaces the worker; calls then succeed again.
        assert!(
            eventually(Duration::from_secs(30), || pool.stats().restarts >= 1).await,
            "the worker with a broken fast path was never replaced: {:?}",
            pool.stats()
        );
        wait_full(&dspex).await;
        for i in 0..5 {
            assert_eq!(
                QA::predict(&dspex, ask(i)).await.unwrap().answer,
                format!("a{i}")
            );
        }
        assert_ne!(some_worker_pid(&dspex).await, pid);
        dspex.shutdown().await.unwrap();
    });
}

#[test]
fn calls_in_a_session_are_never_retried() {
    run(async {
        let (dspex, count_file, _dir) = retrying_slow_pool().await;
        let session = dspex.bridge().create_session().await.unwrap();
        let qa = session.predict(QA::spec(), None).await.unwrap();
        let call = {
            let qa = qa.clone();
            tokio::spawn(async move {
                let prediction = qa.call(dspex::SignatureInput::to_inputs(&ask(3))).await?;
                dspex::SignatureOutput::from_outputs(prediction.outputs)
                    .map(|_: QAOutput| ())
                    .map_err(|source| dspex::Error::Decode {
                        signature: "QA".into(),
                        source,
                    })
            })
        };
        assert!(
            eventually(Duration::from_secs(30), || lm_requests(&count_file) == 1).await,
            "the call reached the LM"
        );
        // The session's worker dies under the call (its shim, and with it the forked worker).
        let pool = dspex.bridge().pool();
        let slot = pool
            .session_worker(qa.session_id())
            .expect("the session is bound to a worker")
            .slot;
        kill(pool.workers()[slot].pid.unwrap(), libc::SIGKILL);
        let error = tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .expect("the call returns")
            .unwrap()
            .unwrap_err();
        // A retry would have found the session's worker gone (`SessionWorkerLost`); the call
        // got the crash of its one and only attempt.
        assert!(is_crash(&error), "the first attempt's crash, got {error}");
        assert_eq!(lm_requests(&count_file), 1, "sent once");
        dspex.shutdown().await.unwrap();
    });
}
