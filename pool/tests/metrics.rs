//! The pool's metrics reach the installed `metrics` recorder: requests, errors by kind, queue
//! wait and request time, restarts and recycles, workers by state, queue depth, circuit state.

mod common;

use std::time::Duration;

use common::*;
use snakepit::{CircuitBreakerConfig, PoolError, telemetry};

#[path = "support/captured_metrics.rs"]
mod captured_metrics;
use captured_metrics::Captured;

fn counter(name: &str) -> u64 {
    Captured::install().counter(name)
}

fn gauge(name: &str) -> Option<f64> {
    Captured::install().gauge(name)
}

#[tokio::test]
async fn the_pool_reports_its_work_through_the_metrics_facade() {
    let captured = Captured::install();
    let (_dir, config) = config(2);
    let pool = start(
        adapter(),
        config
            .queue_timeout(Duration::from_millis(300))
            .max_requests(Some(6)),
    )
    .await;
    assert_eq!(gauge("snakepit_workers{state=idle}"), Some(2.0));

    // Two long requests hold both workers; three more queue behind them.
    let long: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { request(&pool, "sleep 2000").await })
        })
        .collect();
    eventually(Duration::from_secs(5), "both workers are busy", || {
        gauge("snakepit_workers{state=busy}") == Some(2.0)
    })
    .await;
    let queued: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { request(&pool, "echo x").await })
        })
        .collect();
    eventually(Duration::from_secs(5), "three requests queue", || {
        gauge(telemetry::QUEUE_DEPTH) == Some(3.0)
    })
    .await;
    assert_eq!(gauge(telemetry::IN_FLIGHT), Some(2.0));
    for q in queued {
        assert!(matches!(
            q.await.unwrap(),
            Err(PoolError::QueueTimeout { .. })
        ));
    }
    for l in long {
        l.await.unwrap().unwrap().unwrap();
    }
    // A crash, and enough requests to recycle both workers (6 each).
    let crashed = request(&pool, "crash 3").await;
    assert!(matches!(crashed, Err(PoolError::WorkerCrashed { .. })));
    pool.await_ready().await.unwrap();
    for _ in 0..12 {
        request(&pool, "echo y").await.unwrap().unwrap();
    }
    eventually(Duration::from_secs(10), "workers were recycled", || {
        pool.stats().recycles >= 1 && pool.stats().workers_ready == 2
    })
    .await;

    let stats = pool.stats();
    let names = captured.names();
    assert_eq!(
        captured.counter(telemetry::REQUESTS),
        stats.requests,
        "{names:?}"
    );
    assert_eq!(counter("snakepit_errors_total{kind=queue_timeout}"), 3);
    assert_eq!(counter("snakepit_errors_total{kind=worker_crashed}"), 1);
    assert_eq!(counter(telemetry::RESTARTS), 1);
    assert_eq!(
        counter("snakepit_worker_recycles_total{reason=max_requests}"),
        stats.recycles
    );
    // Every request that got a worker waited (if only an instant) and ran: one sample each.
    assert_eq!(
        captured.samples(telemetry::QUEUE_WAIT).len() as u64,
        stats.requests
    );
    let durations = captured.samples(telemetry::REQUEST_DURATION);
    assert_eq!(durations.len() as u64, stats.requests);
    assert!(
        durations.iter().filter(|&&d| d >= 2.0).count() >= 2,
        "the two 2 s requests: {durations:?}"
    );
    eventually(Duration::from_secs(5), "all idle again", || {
        gauge("snakepit_workers{state=idle}") == Some(2.0)
            && gauge(telemetry::QUEUE_DEPTH) == Some(0.0)
    })
    .await;
    pool.shutdown().await.unwrap();
    assert_eq!(counter("snakepit_errors_total{kind=request_timeout}"), 0);

    // The gauges have no pool label: one pool at a time in this test binary.
    the_circuit_state_is_a_gauge().await;
}

async fn the_circuit_state_is_a_gauge() {
    let (_dir, config) = config(1);
    let pool = start(
        adapter(),
        config.circuit_breaker(Some(CircuitBreakerConfig::new(2, Duration::from_secs(60)))),
    )
    .await;
    request(&pool, "echo ok").await.unwrap().unwrap();
    assert_eq!(gauge(telemetry::CIRCUIT_STATE), Some(0.0));
    for _ in 0..2 {
        let _ = request(&pool, "crash 1").await;
        pool.await_ready().await.unwrap();
    }
    assert_eq!(gauge(telemetry::CIRCUIT_STATE), Some(2.0), "open");
    assert!(matches!(
        request(&pool, "echo no").await,
        Err(PoolError::CircuitOpen { .. })
    ));
    assert!(counter("snakepit_errors_total{kind=circuit_open}") >= 1);
    pool.shutdown().await.unwrap();
}
