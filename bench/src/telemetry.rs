//! The telemetry group: per-call overhead with tracing and metrics on (a `tracing-subscriber`
//! fmt subscriber at INFO, as a service installs by default, and a Prometheus recorder) against
//! the same calls with neither, in one run, as a ratio.
//!
//! Subscriber and recorder are process-wide, so each side is a child process of this benchmark
//! (the same binary, `DSPEX_BENCH_TELEMETRY_CHILD=on|off`) with its own one-worker pool; the
//! parent asks them for short blocks of sequential calls in turn, so both see the same machine.

use std::io::{BufRead, BufReader, Write};

use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use dspex::Value;
use dspex::prelude::*;

use crate::{Overhead, Summary, answer, input, median_and_spread, percentile, start};

/// The environment variable that makes this binary a telemetry child.
pub(crate) const CHILD: &str = "DSPEX_BENCH_TELEMETRY_CHILD";

const CALLS: usize = 200;
const BLOCKS: usize = 30;
const WARMUP: usize = 300;

/// The child: installs the telemetry (or not), starts a pool, then answers `block <first>`
/// commands on standard input with the block's per-call times (µs) as a JSON list.
pub(crate) async fn child(mode: &str) {
    if mode == "on" {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(std::io::sink)
            .init();
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        metrics::set_global_recorder(recorder).expect("the only recorder");
    }
    let total = WARMUP + BLOCKS * CALLS;
    let answers: Vec<Value> = (0..total)
        .map(|i| answer(&[("answer", &format!("a{i}")), ("confidence", "0.5")]))
        .collect();
    let dspex = start(1, Lm::dummy(Value::List(answers)), 64).await;
    let mut out = std::io::stdout();
    loop {
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line).expect("a command") == 0 {
            break;
        }
        let mut words = line.split_whitespace();
        let (Some("block"), Some(first), Some(calls)) = (words.next(), words.next(), words.next())
        else {
            break;
        };
        let (first, calls): (usize, usize) =
            (first.parse().expect("first"), calls.parse().expect("calls"));
        let mut times = Vec::with_capacity(calls);
        for i in first..first + calls {
            let started = std::time::Instant::now();
            let out = Overhead::predict(&dspex, input(i)).await.expect("predict");
            times.push(started.elapsed().as_secs_f64() * 1e6);
            assert_eq!(out.answer, format!("a{i}"));
        }
        writeln!(out, "{}", serde_json::to_string(&times).expect("json")).expect("stdout");
        out.flush().expect("stdout");
    }
    dspex.shutdown().await.expect("shutdown");
}

struct Side {
    child: Child,
    input: ChildStdin,
    output: std::io::Lines<BufReader<ChildStdout>>,
}

impl Side {
    fn start(mode: &str) -> Side {
        let mut child = Command::new(std::env::current_exe().expect("this benchmark"))
            .env(CHILD, mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("a telemetry child");
        let input = child.stdin.take().expect("stdin");
        let output = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Side {
            child,
            input,
            output,
        }
    }

    fn block(&mut self, first: usize, calls: usize) -> Vec<f64> {
        writeln!(self.input, "block {first} {calls}").expect("command");
        let line = self.output.next().expect("an answer").expect("output");
        let mut times: Vec<f64> = serde_json::from_str(&line).expect("times");
        times.sort_by(f64::total_cmp);
        times
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        let _ = writeln!(self.input, "end");
        let _ = self.child.wait();
    }
}

/// Alternating blocks of sequential typed predictions with telemetry on and off.
pub(crate) fn telemetry(summary: &mut Summary) {
    let (mut on, mut off) = (Side::start("on"), Side::start("off"));
    on.block(0, WARMUP);
    off.block(0, WARMUP);
    let mut ratios = Vec::new();
    let (mut on_times, mut off_times) = (Vec::new(), Vec::new());
    for block in 0..BLOCKS {
        let first = WARMUP + block * CALLS;
        // Each side goes first in every other block.
        let (a, b) = if block % 2 == 0 {
            (on.block(first, CALLS), off.block(first, CALLS))
        } else {
            let b = off.block(first, CALLS);
            (on.block(first, CALLS), b)
        };
        ratios.push(percentile(&a, 0.5) / percentile(&b, 0.5));
        on_times.extend(a);
        off_times.extend(b);
    }
    drop((on, off));
    on_times.sort_by(f64::total_cmp);
    off_times.sort_by(f64::total_cmp);
    let (ratio, low, high) = median_and_spread(&mut ratios);
    summary.set("telemetry.on_p50_us", percentile(&on_times, 0.5));
    summary.set("telemetry.off_p50_us", percentile(&off_times, 0.5));
    summary.set("telemetry.ratio", ratio);
    summary.set("telemetry.ratio_min", low);
    summary.set("telemetry.ratio_max", high);
}
