#![allow(missing_docs)]
//! The soak test (opt-in; about 10 minutes):
//!
//! ```text
//! cargo test --release -p dspex-tests --test soak -- --ignored soak --nocapture
//! ```
//!
//! 100,000 typed predictions with DummyLM, in bursts of 256 in flight spread over 10 minutes, while
//! worker 0 is SIGKILLed every 30 s and the retry policy resends what the kills interrupt. Checks:
//! every call returns exactly once with its own answer (none lost, none duplicated or swapped), the
//! resident memory of the worker that is never killed stays within 10% of its size after warm-up,
//! and the test process's open file descriptors do not grow. `DSPEX_SOAK_CALLS`,
//! `DSPEX_SOAK_SECS`, `DSPEX_SOAK_CONCURRENCY` and `DSPEX_SOAK_KILL_EVERY_SECS` change the load.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dspex::snakepit_grpc_bridge::RetryPolicy;
use dspex::{Dspex, Lm};
use support::{QA, ask, kill, numbered_answers, open_fds, rss_kb, run};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The Python process serving `slot`, found by pinging until that worker answers.
async fn worker_pid(dspex: &Dspex, slot: usize) -> Option<u32> {
    for _ in 0..200 {
        if let Ok(me) = dspex.bridge().ping().await
            && me.worker_id.split('.').next() == Some(&slot.to_string())
        {
            return Some(me.pid);
        }
    }
    None
}

const DISTINCT: usize = 1000;

#[test]
#[ignore = "soak test: about 10 minutes; run with `cargo test --release -p dspex-tests --test soak -- --ignored soak`"]
fn soak() {
    let calls = setting("DSPEX_SOAK_CALLS", 100_000) as usize;
    let duration = Duration::from_secs(setting("DSPEX_SOAK_SECS", 600));
    let concurrency = setting("DSPEX_SOAK_CONCURRENCY", 256) as usize;
    let kill_every = Duration::from_secs(setting("DSPEX_SOAK_KILL_EVERY_SECS", 30));
    run(async move {
        let dspex = support::builder()
            .lm(Lm::dummy(dspex::Value::Map(numbered_answers(DISTINCT))))
            .workers(2)
            .bridge(|b| b.retry(RetryPolicy::new(5).initial_backoff(Duration::from_millis(20))))
            .start()
            .await
            .unwrap();
        let results: Arc<Vec<AtomicU32>> =
            Arc::new((0..calls).map(|_| AtomicU32::new(0)).collect());
        let wrong = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let started = Instant::now();
        let warm_up = duration / 10;

        // Worker 0 is killed every `kill_every`; worker 1 lives throughout and is measured.
        let killer = {
            let dspex = dspex.clone();
            tokio::spawn(async move {
                let mut kills = 0u32;
                loop {
                    tokio::time::sleep(kill_every).await;
                    if started.elapsed() + kill_every / 2 > duration {
                        return kills;
                    }
                    if let Some(pid) = worker_pid(&dspex, 0).await {
                        kill(pid, libc::SIGKILL);
                        kills += 1;
                    }
                }
            })
        };
        let sampler = {
            let dspex = dspex.clone();
            tokio::spawn(async move {
                let survivor = worker_pid(&dspex, 1).await.expect("worker 1 answers");
                let mut samples = Vec::new();
                while started.elapsed() < duration {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    samples.push((started.elapsed(), rss_kb(survivor).unwrap_or(0), open_fds()));
                }
                (survivor, samples)
            })
        };

        let mut tasks = Vec::with_capacity(calls);
        for i in 0..calls {
            // Paced in bursts of `concurrency` calls spread over the duration, so each burst has
            // them all in flight at once.
            if i % concurrency == 0 {
                let bursts = calls.div_ceil(concurrency);
                let due = started + duration.mul_f64((i / concurrency) as f64 / bursts as f64);
                tokio::time::sleep_until(due.into()).await;
            }
            let permit = gate.clone().acquire_owned().await.unwrap();
            let (dspex, results, wrong, failed) = (
                dspex.clone(),
                results.clone(),
                wrong.clone(),
                failed.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let n = i % DISTINCT;
                match QA::predict(&dspex, ask(n)).await {
                    Ok(output) if output.answer == format!("a{n}") => {
                        results[i].fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(output) => {
                        wrong.fetch_add(1, Ordering::Relaxed);
                        eprintln!("call {i} got {:?}", output.answer);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("call {i} failed: {e}");
                    }
                }
                drop(permit);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let elapsed = started.elapsed();
        let kills = killer.await.unwrap();
        let (survivor, samples) = sampler.await.unwrap();
        let stats = dspex.bridge().pool().stats();
        dspex.shutdown().await.unwrap();

        let answered_once = results
            .iter()
            .filter(|r| r.load(Ordering::Relaxed) == 1)
            .count();
        let duplicated = results
            .iter()
            .filter(|r| r.load(Ordering::Relaxed) > 1)
            .count();
        let lost = calls - answered_once - duplicated;
        let after_warm_up: Vec<_> = samples.iter().filter(|(t, ..)| *t >= warm_up).collect();
        let (rss_base, fds_base) = after_warm_up
            .first()
            .map(|(_, rss, fds)| (*rss, *fds))
            .unwrap_or_default();
        let rss_max = after_warm_up
            .iter()
            .map(|(_, rss, _)| *rss)
            .max()
            .unwrap_or(0);
        let fds_max = after_warm_up
            .iter()
            .map(|(.., fds)| *fds)
            .max()
            .unwrap_or(0);
        let fds_end = open_fds();
        println!("| soak figure | value |");
        println!("|---|---|");
        println!(
            "| calls | {calls} in {:.1} s ({:.0}/s), up to {concurrency} in flight |",
            elapsed.as_secs_f64(),
            calls as f64 / elapsed.as_secs_f64()
        );
        println!(
            "| worker kills (SIGKILL) | {kills} (every {kill_every:?}); pool restarts {} |",
            stats.restarts
        );
        println!("| answered exactly once, correct | {answered_once} |");
        println!(
            "| lost / duplicated / wrong / failed | {lost} / {duplicated} / {} / {} |",
            wrong.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed)
        );
        println!(
            "| survivor worker {survivor} RSS after warm-up / max | {rss_base} kB / {rss_max} kB ({:+.1}%) |",
            (rss_max as f64 / rss_base.max(1) as f64 - 1.0) * 100.0
        );
        println!(
            "| test process fds after warm-up / max / end | {fds_base} / {fds_max} / {fds_end} |"
        );
        let by_minute: Vec<String> = samples
            .iter()
            .filter(|(t, ..)| t.as_secs() % 60 < 5)
            .map(|(t, rss, _)| format!("{} s: {:.1} MB", t.as_secs(), *rss as f64 / 1024.0))
            .collect();
        println!("| survivor RSS over time | {} |", by_minute.join(", "));
        assert_eq!((lost, duplicated, wrong.load(Ordering::Relaxed)), (0, 0, 0));
        assert!(
            kills >= 1 || duration < kill_every,
            "the workers were killed"
        );
        assert!(rss_base > 0, "the survivor was measured");
        assert!(
            rss_max as f64 <= rss_base as f64 * 1.10,
            "worker RSS grew from {rss_base} kB to {rss_max} kB"
        );
        assert!(
            fds_end <= fds_base + 4,
            "file descriptors grew from {fds_base} to {fds_end}"
        );
    });
}
