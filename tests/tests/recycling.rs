#![allow(missing_docs)]
//! Python workers recycled under load: with tight limits every typed call still succeeds, and the
//! replacements serve compiled signatures they never saw (definitions are sent again).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use dspex::snakepit_grpc_bridge::{RecycleReason, Value, WorkerExit, args, snakepit};
use support::{QA, ask, builder, eventually, faulty_lm, numbered_answers, run};

const CALLS: usize = 240;

#[test]
fn typed_calls_under_tight_recycling_limits_all_succeed() {
    run(async {
        let dspex = builder()
            .lm(faulty_lm(
                numbered_answers(CALLS),
                &[("delay_ms", Value::from(5.0))],
            ))
            .workers(2)
            .bridge(|b| {
                b.pool(|p| {
                    p.max_in_flight_per_worker(4)
                        .max_requests(Some(25))
                        .max_age(Some(Duration::from_secs(2)))
                        .queue_timeout(Duration::from_secs(120))
                })
            })
            .start()
            .await
            .unwrap();
        let first: BTreeSet<u32> = dspex
            .bridge()
            .pool()
            .workers()
            .iter()
            .filter_map(|w| w.pid)
            .collect();
        let calls: Vec<_> = (0..CALLS)
            .map(|i| {
                let dspex = dspex.clone();
                tokio::spawn(async move { (i, QA::predict(&dspex, ask(i)).await) })
            })
            .collect();
        for call in calls {
            let (i, answer) = call.await.unwrap();
            match answer {
                Ok(out) => assert_eq!(out.answer, format!("a{i}")),
                Err(e) => panic!("call {i} failed: {}", dspex::error_chain(&e)),
            }
        }
        let pool = dspex.bridge().pool();
        let stats = pool.stats();
        assert_eq!((stats.errors, stats.restarts), (0, 0), "{stats:?}");
        assert!(stats.recycles >= CALLS as u64 / 25 - 2, "{stats:?}");
        let now: BTreeSet<u32> = pool.workers().iter().filter_map(|w| w.pid).collect();
        assert!(first.is_disjoint(&now), "the first workers were replaced");
        assert!(pool.workers().iter().all(|w| matches!(
            w.previous_exit,
            Some(WorkerExit::Recycled(
                RecycleReason::MaxRequests(25) | RecycleReason::MaxAge(_)
            ))
        )));
        eprintln!(
            "{CALLS} typed calls, 2 workers recycled every 25 requests or 2 s: {} recycles, 0 errors",
            stats.recycles
        );
        dspex.shutdown().await.unwrap();
    });
}

/// `max_memory` reads the worker's own memory: with the fork server, the pool's process for a
/// slot is the shim (a few MB), and the worker is its forked sibling.
#[test]
fn a_forked_worker_past_its_memory_limit_is_recycled() {
    run(async {
        let dspex = builder()
            .lm(faulty_lm(numbered_answers(4), &[]))
            .import("dspex_memory_tools")
            .workers(1)
            .bridge(|b| {
                b.pool(|p| {
                    p.max_memory(Some(400 << 20))
                        .memory_check_interval(Duration::from_millis(100))
                })
            })
            .start()
            .await
            .unwrap();
        let bridge = dspex.bridge();
        assert!(
            bridge.pool().adapter().uses_fork_server(),
            "the worker is forked"
        );
        let before = bridge.ping().await.unwrap().pid;
        assert!(
            snakepit::resident_bytes(before).unwrap() < 400 << 20,
            "the worker starts under its limit"
        );
        let session = bridge.create_session().await.unwrap();
        let held = session
            .call_tool("hold_memory", args([("mb", 500)]))
            .await
            .unwrap();
        assert_eq!(held.as_i64(), Some(500));
        // A session bound to a retiring worker keeps it until the session ends.
        session.close().await.unwrap();
        assert!(
            eventually(Duration::from_secs(30), || bridge.pool().stats().recycles
                == 1)
            .await,
            "the worker was not recycled: {:?}",
            bridge.pool().stats()
        );
        assert!(matches!(
            bridge.pool().workers()[0].previous_exit,
            Some(WorkerExit::Recycled(RecycleReason::MaxMemory { rss_bytes, .. })) if rss_bytes > 400 << 20
        ));
        assert!(eventually(Duration::from_secs(30), || bridge.pool().workers()[0].ready).await);
        assert_ne!(bridge.ping().await.unwrap().pid, before, "a new worker");
        dspex.shutdown().await.unwrap();
    });
}
