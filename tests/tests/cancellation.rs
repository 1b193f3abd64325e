#![allow(missing_docs)]
//! Calls whose caller goes away are cancelled in the worker: a timed-out call under a retry
//! policy never runs beside its own retry, and dropped calls leave nothing running. Real workers,
//! real DSPy, and an LM (`dspex_faulty_lm.FaultyLM`) that records when each request starts and
//! ends.

mod support;

use std::path::Path;
use std::time::Duration;

use dspex::Error;
use dspex::snakepit_grpc_bridge::{BridgeError, PoolError, RetryPolicy, Value};
use support::{QA, ask, builder, eventually, faulty_lm, lm_events, numbered_answers, run, tally};

const CALLS: usize = 100;

/// How many questions have an LM request still running.
fn still_running(tallies: &std::collections::BTreeMap<String, support::RequestTally>) -> usize {
    tallies.values().filter(|t| t.running > 0).count()
}

/// Two workers whose LM takes 30 s per request (no call ever finishes by itself), recording its
/// requests in `events`.
async fn slow_pool(events: &Path, retry: Option<RetryPolicy>) -> dspex::Dspex {
    builder()
        .lm(faulty_lm(
            numbered_answers(CALLS),
            &[
                ("delay_ms", Value::from(30_000.0)),
                ("events_file", Value::from(events.to_str().unwrap())),
            ],
        ))
        .workers(2)
        .bridge(|b| {
            let b = b.pool(|p| p.request_timeout(Some(Duration::from_secs(1))));
            match retry {
                Some(policy) => b.retry(policy),
                None => b,
            }
        })
        .start()
        .await
        .unwrap()
}

#[test]
fn timed_out_calls_under_a_retry_policy_never_run_beside_their_retry() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("events");
        let dspex = slow_pool(
            &events,
            Some(RetryPolicy::new(3).initial_backoff(Duration::from_millis(10))),
        )
        .await;
        let calls: Vec<_> = (0..CALLS)
            .map(|i| {
                let dspex = dspex.clone();
                tokio::spawn(async move { QA::predict(&dspex, ask(i)).await })
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            let result = tokio::time::timeout(Duration::from_secs(120), call)
                .await
                .expect("no call hangs")
                .unwrap();
            assert!(
                matches!(
                    result,
                    Err(Error::Bridge(BridgeError::Pool(
                        PoolError::RequestTimeout { .. }
                    )))
                ),
                "call {i}: a typed timeout, got {result:?}"
            );
        }
        // Every attempt that started was cancelled, none still runs in a worker.
        let settled = eventually(Duration::from_secs(10), || {
            tally(&lm_events(&events)).values().all(|t| t.running == 0)
        })
        .await;
        let tallies = tally(&lm_events(&events));
        assert!(
            settled,
            "LM requests of {} calls still run after the calls failed",
            still_running(&tallies)
        );
        assert_eq!(
            tallies.len(),
            CALLS,
            "every call reached the LM: {tallies:?}"
        );
        for (question, t) in &tallies {
            assert_eq!(
                t.most_at_once, 1,
                "{question}: two attempts of one call ran at once: {t:?}"
            );
            assert_eq!(
                t.cancelled, t.started,
                "{question}: every attempt was cancelled: {t:?}"
            );
            assert!(t.started <= 3, "{question}: at most 3 attempts: {t:?}");
        }
        // The worker confirmed the cancels, so the policy did retry.
        let attempts: usize = tallies.values().map(|t| t.started).sum();
        assert!(
            attempts > CALLS * 2,
            "confirmed cancels let the policy retry: {attempts} attempts for {CALLS} calls"
        );
        eprintln!(
            "{CALLS} timed-out calls under RetryPolicy::new(3): {attempts} LM requests, never two of one call at once, 0 left running"
        );
        dspex.shutdown().await.unwrap();
    });
}

#[test]
fn dropped_calls_are_cancelled_in_the_worker() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("events");
        let dspex = slow_pool(&events, None).await;
        let calls: Vec<_> = (0..CALLS)
            .map(|i| {
                let dspex = dspex.clone();
                tokio::spawn(async move { QA::predict(&dspex, ask(i)).await })
            })
            .collect();
        let all_started = eventually(Duration::from_secs(30), || {
            tally(&lm_events(&events)).len() == CALLS
        })
        .await;
        assert!(all_started, "every call reached the LM");
        for call in &calls {
            call.abort();
        }
        for call in calls {
            assert!(call.await.unwrap_err().is_cancelled());
        }
        // Long before the LM's 30 s are up, every request was abandoned in the worker.
        let stopped = eventually(Duration::from_secs(10), || {
            tally(&lm_events(&events)).values().all(|t| t.running == 0)
        })
        .await;
        let tallies = tally(&lm_events(&events));
        assert!(
            stopped,
            "{} of {CALLS} dropped calls still run in the worker",
            still_running(&tallies)
        );
        for (question, t) in &tallies {
            assert_eq!(
                (t.started, t.cancelled),
                (1, 1),
                "{question}: one request, cancelled"
            );
        }
        let stats = dspex.bridge().pool().stats();
        assert_eq!(stats.restarts, 0, "cancelling is not crashing");
        // The workers are free again: new calls run (and time out) as usual.
        let error = QA::predict(&dspex, ask(0)).await.unwrap_err();
        assert!(matches!(
            error,
            Error::Bridge(BridgeError::Pool(PoolError::RequestTimeout { .. }))
        ));
        eprintln!("{CALLS} dropped calls: all cancelled in the worker, 0 left running");
        dspex.shutdown().await.unwrap();
    });
}

#[test]
fn a_timeout_whose_cancel_the_worker_cannot_confirm_is_not_sent_again() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let count_file = dir.path().join("requests");
        let dspex = builder()
            .lm(faulty_lm(
                numbered_answers(3),
                &[
                    ("delay_ms", Value::from(2_000.0)),
                    ("count_file", Value::from(count_file.to_str().unwrap())),
                ],
            ))
            .workers(2)
            .bridge(|b| {
                b.retry(RetryPolicy::new(3).initial_backoff(Duration::from_millis(10)))
                    .pool(|p| p.request_timeout(Some(Duration::from_secs(1))))
            })
            .start()
            .await
            .unwrap();
        let call = {
            let dspex = dspex.clone();
            tokio::spawn(async move { QA::predict(&dspex, ask(1)).await })
        };
        let requests = || std::fs::read_to_string(&count_file).unwrap_or_default();
        assert!(
            eventually(Duration::from_secs(30), || requests().lines().count() == 1).await,
            "the call reached the LM"
        );
        // The LM writes its worker's pid: stop that worker, so it can confirm nothing.
        let busy: u32 = requests().trim().parse().unwrap();
        support::kill(busy, libc::SIGSTOP);
        let result = tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .expect("the call returns")
            .unwrap();
        support::kill(busy, libc::SIGCONT);
        assert!(
            matches!(
                result,
                Err(Error::Bridge(BridgeError::Pool(
                    PoolError::RequestTimeout { .. }
                )))
            ),
            "the timeout is returned as it is, got {result:?}"
        );
        // A retry would have gone to the other worker and reached the LM again.
        assert_eq!(requests().lines().count(), 1, "sent once");
        dspex.shutdown().await.unwrap();
    });
}

#[test]
fn a_call_deadline_cancels_the_call_in_the_worker_and_frees_its_slot_at_once() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("events");
        // One worker, one call at a time: a slot held after the deadline would block the next.
        let dspex = builder()
            .lm(faulty_lm(
                numbered_answers(3),
                &[
                    ("delay_ms", Value::from(30_000.0)),
                    ("events_file", Value::from(events.to_str().unwrap())),
                ],
            ))
            .workers(1)
            .bridge(|b| {
                b.pool(|p| {
                    p.max_in_flight_per_worker(1)
                        .request_timeout(Some(Duration::from_millis(300)))
                })
            })
            .start()
            .await
            .unwrap();
        let qa = dspex::Predict::<QA>::new(&dspex);
        // Longer than the pool's 300 ms request timeout: the call's deadline replaces it.
        let deadline = Duration::from_millis(800);
        let options = dspex::CallOptions::default().timeout(deadline);
        let started = std::time::Instant::now();
        let error = qa.call_with(ask(1), &options).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(
                error,
                Error::Bridge(BridgeError::DeadlineExceeded { after }) if after == deadline
            ),
            "a typed deadline error, got {error:?}"
        );
        assert!(
            took >= deadline && took < Duration::from_secs(5),
            "the deadline, not the pool's timeout nor the LM, ended the call: {took:?}"
        );
        // The slot is free the moment the call returns.
        assert_eq!(dspex.bridge().pool().stats().in_flight, 0);
        // The worker abandoned the LM request long before its 30 s.
        let cancelled = eventually(Duration::from_secs(10), || {
            tally(&lm_events(&events))
                .values()
                .all(|t| t.running == 0 && t.cancelled == 1)
        })
        .await;
        assert!(
            cancelled,
            "the LM request was cancelled: {:?}",
            tally(&lm_events(&events))
        );
        // The one slot serves the next call at once; a shorter deadline than the pool's ends it.
        let started = std::time::Instant::now();
        let error = qa
            .call_with(
                ask(2),
                &dspex::CallOptions::default().timeout(Duration::from_millis(100)),
            )
            .await
            .unwrap_err();
        assert!(matches!(
            error,
            Error::Bridge(BridgeError::DeadlineExceeded { .. })
        ));
        assert!(started.elapsed() < Duration::from_millis(300));
        assert_eq!(dspex.bridge().pool().stats().restarts, 0);
        dspex.shutdown().await.unwrap();
    });
}
