//! Typed DSPy behind a service, observed: Prometheus metrics of the pool and of every call, and
//! log lines that carry each call's trace id (the worker's too).
//!
//! `cargo run -p dspex --example service_metrics` serves 40 questions (8 at a time) on the
//! offline rule LM (`examples/python/dspex_rule_lm.py`, 20 ms per request), prints what a
//! Prometheus scrape would read, then, with `--serve`, keeps the metrics on
//! `http://127.0.0.1:9464/metrics` until Ctrl-C. `RUST_LOG=info` shows the call spans.

use std::net::{Ipv4Addr, SocketAddr};

use dspex::prelude::*;
use metrics_exporter_prometheus::PrometheusBuilder;

/// Rewrite the question as a short search query.
#[dspy_signature]
pub struct Rewrite {
    /// The question.
    #[input]
    pub question: String,
    /// The query.
    #[output]
    pub query: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let serve = std::env::args().any(|a| a == "--serve");
    // The recorder first: the pool takes its metric handles when it starts.
    let builder = PrometheusBuilder::new();
    let prometheus = if serve {
        // Loopback only; a real service chooses its own address.
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, 9464));
        builder.with_http_listener(address).install_recorder()?
    } else {
        builder.install_recorder()?
    };

    let mut kwargs = dspex::__private::Map::new();
    kwargs.insert("delay_ms".into(), 20.into());
    let dspex = Dspex::builder()
        .lm(Lm::custom("dspex_rule_lm.RuleLM", kwargs))
        .workers(2)
        .bridge(|b| b.pool(|p| p.max_in_flight_per_worker(4).max_requests(Some(15))))
        .python_path(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python"))
        .start()
        .await?;
    let rewrite = Predict::<Rewrite>::new(&dspex);
    let questions: Vec<_> = (0..40)
        .map(|i| RewriteInput {
            question: format!("What is <q{i}>?"),
        })
        .collect();
    for chunk in questions.chunks(8) {
        let calls = chunk.iter().cloned().map(|q| rewrite.call(q));
        for answer in futures_util::future::join_all(calls).await {
            answer?;
        }
    }
    let scrape = prometheus.render();
    for line in scrape.lines().filter(|l| {
        !l.starts_with('#')
            && (l.starts_with("dspy_")
                || l.starts_with("snakepit_requests")
                || l.starts_with("snakepit_worker")
                || l.starts_with("snakepit_queue_wait_seconds_count"))
    }) {
        println!("{line}");
    }
    if serve {
        println!("\nServing the metrics on http://127.0.0.1:9464/metrics; Ctrl-C to stop.");
        tokio::signal::ctrl_c().await?;
    }
    dspex.shutdown().await?;
    Ok(())
}
