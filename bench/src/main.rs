//! The dspex benchmark: everything it compares is measured in this one run, on this machine.
//!
//! `cargo run --release -p dspex-bench` prints a table and writes `target/dspex-bench/summary.json`
//! (flat keys: numbers, and `meta.*` for the machine, the Python packages and the git revision).
//! Python baselines run as scripts in the managed environment.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dspex::__private::Map;
use dspex::Value;
use dspex::prelude::*;
use dspex::snakepit_grpc_bridge::environment::{EnvironmentOptions, PythonEnvironment};
use tokio::sync::Semaphore;

mod optimize;
mod ray;
mod streaming;
mod telemetry;

/// Answer the question from the context.
#[dspy_signature]
pub struct Overhead {
    /// The question.
    #[input]
    pub question: String,
    /// What to answer from.
    #[input]
    pub context: String,
    /// The answer.
    #[output]
    pub answer: String,
    /// How sure.
    #[output]
    pub confidence: f64,
}

/// Calls per block of the overhead group, per side.
const OVERHEAD_CALLS: usize = 200;
/// Blocks per side, alternating.
const OVERHEAD_BLOCKS: usize = 15;
const WARMUP: usize = 300;

struct Summary(BTreeMap<String, f64>);

impl Summary {
    fn set(&mut self, key: &str, value: f64) {
        self.0
            .insert(key.to_owned(), (value * 100.0).round() / 100.0);
    }
}

fn bench_python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python")
}

fn python_baseline(environment: &PythonEnvironment, args: &[&str]) -> serde_json::Value {
    let output = Command::new(environment.python())
        .arg(bench_python_dir().join("baselines.py"))
        .args(args)
        .env("PYTHONPATH", bench_python_dir())
        .output()
        .expect("the Python baseline runs");
    assert!(
        output.status.success(),
        "baseline {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default()).expect("baseline JSON")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

fn answer(pairs: &[(&str, &str)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect(),
    )
}

/// The benchmark LM: waits `delay_ms`, then answers like DummyLM.
fn sleepy_lm(delay_ms: f64) -> Lm {
    let mut kwargs = Map::new();
    kwargs.insert(
        "answer".into(),
        answer(&[("answer", "a"), ("confidence", "0.5")]),
    );
    kwargs.insert("delay_ms".into(), Value::Float(delay_ms));
    Lm::custom("dspex_bench_lm.SleepyLM", kwargs)
}

async fn start(workers: usize, lm: Lm, in_flight: usize) -> Dspex {
    start_with(workers, lm, in_flight, true).await
}

async fn start_with(workers: usize, lm: Lm, in_flight: usize, fork_server: bool) -> Dspex {
    Dspex::builder()
        .lm(lm)
        .workers(workers)
        .python_path(bench_python_dir())
        .import("dspex_bench_lm")
        .bridge(|b| {
            b.fork_server(fork_server).pool(|p| {
                p.max_in_flight_per_worker(in_flight)
                    .queue_size(1 << 16)
                    .request_timeout(Some(Duration::from_secs(300)))
            })
        })
        .start()
        .await
        .expect("dspex starts")
}

fn input(i: usize) -> OverheadInput {
    OverheadInput {
        question: format!("what is <q{i}>?"),
        context: "some context".into(),
    }
}

/// The median of `values` and its spread (min, max).
fn median_and_spread(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (percentile(values, 0.5), values[0], values[values.len() - 1])
}

/// The in-process Python side of the overhead group: one `baselines.py serve` process, asked for
/// one block of calls at a time.
struct PythonBlocks {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

/// One block of sequential calls: wall times (µs) and CPU time per call (µs).
struct Block {
    times: Vec<f64>,
    cpu_us: f64,
}

impl PythonBlocks {
    fn start(environment: &PythonEnvironment) -> Self {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = Command::new(environment.python())
            .arg(bench_python_dir().join("baselines.py"))
            .arg("serve")
            .env("PYTHONPATH", bench_python_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the Python baseline starts");
        let input = child.stdin.take().expect("stdin");
        let output = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        PythonBlocks {
            child,
            input,
            output,
        }
    }

    fn run(&mut self, kind: &str, calls: usize, first: usize) -> Block {
        use std::io::Write;
        writeln!(self.input, "{kind} {calls} {first}").expect("baseline command");
        let line = self
            .output
            .next()
            .expect("a baseline answer")
            .expect("baseline output");
        let answer: serde_json::Value = serde_json::from_str(&line).expect("baseline JSON");
        let times = answer["times_us"]
            .as_array()
            .expect("times")
            .iter()
            .map(|t| t.as_f64().expect("a time"))
            .collect();
        Block {
            times,
            cpu_us: answer["cpu_us"].as_f64().expect("cpu_us"),
        }
    }
}

impl Drop for PythonBlocks {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `calls` sequential typed predictions, numbered from `first`; wall times and the CPU time per
/// call of this process and of the worker.
async fn dspex_block(dspex: &Dspex, worker_pid: u32, calls: usize, first: usize) -> (Block, f64) {
    let worker = worker_pid.to_string();
    let (owner_start, worker_start) = (cpu_seconds("self"), cpu_seconds(&worker));
    let mut times = Vec::with_capacity(calls);
    for i in first..first + calls {
        let started = Instant::now();
        let out = Overhead::predict(dspex, input(i)).await.expect("predict");
        times.push(started.elapsed().as_secs_f64() * 1e6);
        assert_eq!(out.answer, format!("a{i}"));
    }
    let per_call = |start: f64, end: f64| (end - start) / calls as f64 * 1e6;
    let block = Block {
        times,
        cpu_us: per_call(worker_start, cpu_seconds(&worker)),
    };
    (block, per_call(owner_start, cpu_seconds("self")))
}

/// Sequential typed predictions against in-process DSPy's sync path, in short alternating blocks
/// (`OVERHEAD_BLOCKS` of `OVERHEAD_CALLS` calls each side, after a warm-up): this machine's speed
/// drifts by tens of percent within seconds, so long rounds, let alone one side after the other,
/// would compare different machines. The ratio is the median of the blocks' ratios, with its
/// spread. Both sides' DummyLM answers from a list (constant time per call).
async fn overhead(environment: &PythonEnvironment, summary: &mut Summary) {
    let total = (OVERHEAD_BLOCKS + 1) * OVERHEAD_CALLS + WARMUP;
    let answers: Vec<Value> = (0..total)
        .map(|i| answer(&[("answer", &format!("a{i}")), ("confidence", "0.5")]))
        .collect();
    let dspex = start(1, Lm::dummy(Value::List(answers)), 64).await;
    let worker_pid = dspex.bridge().ping().await.expect("ping").pid;
    let mut python = PythonBlocks::start(environment);
    python.run("sync", WARMUP, 0);
    dspex_block(&dspex, worker_pid, WARMUP, 0).await;
    let (mut ratios50, mut ratios99) = (Vec::new(), Vec::new());
    let (mut python_times, mut dspex_times) = (Vec::new(), Vec::new());
    let (mut cpu_owner, mut cpu_worker, mut cpu_python) = (Vec::new(), Vec::new(), Vec::new());
    for block in 0..OVERHEAD_BLOCKS {
        let first = WARMUP + block * OVERHEAD_CALLS;
        let mut py = python.run("sync", OVERHEAD_CALLS, first);
        let (mut dx, owner_cpu) = dspex_block(&dspex, worker_pid, OVERHEAD_CALLS, first).await;
        py.times.sort_by(f64::total_cmp);
        dx.times.sort_by(f64::total_cmp);
        ratios50.push(percentile(&dx.times, 0.5) / percentile(&py.times, 0.5));
        ratios99.push(percentile(&dx.times, 0.99) / percentile(&py.times, 0.99));
        cpu_python.push(py.cpu_us);
        cpu_worker.push(dx.cpu_us);
        cpu_owner.push(owner_cpu);
        python_times.extend(py.times);
        dspex_times.extend(dx.times);
    }
    let first = WARMUP + OVERHEAD_BLOCKS * OVERHEAD_CALLS;
    let mut python_async = python.run("async", OVERHEAD_CALLS, first).times;
    drop(python);
    dspex.shutdown().await.expect("shutdown");
    python_times.sort_by(f64::total_cmp);
    dspex_times.sort_by(f64::total_cmp);
    python_async.sort_by(f64::total_cmp);
    let (ratio50, low50, high50) = median_and_spread(&mut ratios50);
    let (ratio99, low99, high99) = median_and_spread(&mut ratios99);
    summary.set("overhead.rounds", OVERHEAD_BLOCKS as f64);
    summary.set("overhead.calls_per_round", OVERHEAD_CALLS as f64);
    summary.set("overhead.python_p50_us", percentile(&python_times, 0.5));
    summary.set("overhead.python_p99_us", percentile(&python_times, 0.99));
    summary.set(
        "overhead.python_async_p50_us",
        percentile(&python_async, 0.5),
    );
    summary.set("overhead.dspex_p50_us", percentile(&dspex_times, 0.5));
    summary.set("overhead.dspex_p99_us", percentile(&dspex_times, 0.99));
    summary.set(
        "overhead.cpu_python_us",
        median_and_spread(&mut cpu_python).0,
    );
    summary.set(
        "overhead.cpu_worker_us",
        median_and_spread(&mut cpu_worker).0,
    );
    summary.set("overhead.cpu_owner_us", median_and_spread(&mut cpu_owner).0);
    summary.set("overhead.ratio_p50", ratio50);
    summary.set("overhead.ratio_p50_min", low50);
    summary.set("overhead.ratio_p50_max", high50);
    summary.set("overhead.ratio_p99", ratio99);
    summary.set("overhead.ratio_p99_min", low99);
    summary.set("overhead.ratio_p99_max", high99);
}

/// The CPU time (user and system, in seconds) a process has used so far: `pid` is a process id
/// or `self`. Linux only; 0 where `/proc` cannot say.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at the state, field 3;
    // utime and stime are fields 14 and 15, in clock ticks of 1/100 s.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs `n` typed predictions with at most `concurrency` in flight; returns the wall time in ms.
async fn fan_out(dspex: &Dspex, n: usize, concurrency: usize) -> f64 {
    let permits = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (dspex, permits) = (dspex.clone(), permits.clone());
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.expect("semaphore");
                Overhead::predict(&dspex, input(i)).await.expect("predict")
            })
        })
        .collect();
    for task in tasks {
        let out = task.await.expect("task");
        assert_eq!(out.answer, "a");
    }
    started.elapsed().as_secs_f64() * 1e3
}

async fn orchestration(environment: &PythonEnvironment, summary: &mut Summary) {
    let python = python_baseline(environment, &["orchestration", "256", "16"]);
    summary.set("orchestration.ideal_ms", 256.0 / 16.0 * 20.0);
    summary.set(
        "orchestration.python_ms",
        python["wall_ms"].as_f64().unwrap(),
    );
    // Two workers: one per core, as DSPy's Evaluate uses every core through its threads.
    let dspex = start(2, sleepy_lm(20.0), 64).await;
    fan_out(&dspex, 32, 16).await; // warm-up
    summary.set("orchestration.dspex_ms", fan_out(&dspex, 256, 16).await);
    dspex.shutdown().await.expect("shutdown");

    // DSPy's own Evaluate on the same 4,096 calls at 512 in flight (threads under one GIL).
    let python = python_baseline(environment, &["orchestration", "4096", "512"]);
    summary.set(
        "orchestration_large.python_ms",
        python["wall_ms"].as_f64().unwrap(),
    );
    let dspex = start(4, sleepy_lm(20.0), 256).await;
    fan_out(&dspex, 1024, 512).await; // warm-up
    summary.set("orchestration_large.ideal_ms", 4096.0 / 512.0 * 20.0);
    let large = fan_out(&dspex, 4096, 512).await;
    summary.set("orchestration_large.dspex_ms", large);
    summary.set(
        "orchestration_large.ratio_to_python",
        large / summary.0["orchestration_large.python_ms"],
    );
    dspex.shutdown().await.expect("shutdown");
}

async fn startup(summary: &mut Summary) {
    for (fork_server, prefix) in [(true, "startup.workers"), (false, "startup.spawn_workers")] {
        for workers in [1, 4, 8] {
            let mut samples = Vec::new();
            for _ in 0..3 {
                let started = Instant::now();
                let dspex = start_with(workers, sleepy_lm(0.0), 64, fork_server).await;
                samples.push(started.elapsed().as_secs_f64() * 1e3);
                dspex.shutdown().await.expect("shutdown");
            }
            samples.sort_by(f64::total_cmp);
            summary.set(&format!("{prefix}_{workers}_ms"), samples[1]);
        }
    }
    // 100 forked workers, from nothing to all ready.
    let started = Instant::now();
    let dspex = start(100, sleepy_lm(0.0), 64).await;
    summary.set(
        "startup.workers_100_ms",
        started.elapsed().as_secs_f64() * 1e3,
    );
    dspex.shutdown().await.expect("shutdown");

    // One crashed worker replaced, in five fresh pools (a pool's later restarts of the same slot
    // back off on purpose): the median.
    let mut samples = Vec::new();
    for _ in 0..5 {
        let dspex = start(2, sleepy_lm(0.0), 64).await;
        let pool = dspex.bridge().pool();
        let victim = pool.workers()[0].pid.expect("a pid");
        let started = Instant::now();
        Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status()
            .expect("kill");
        loop {
            let worker = &pool.workers()[0];
            if worker.ready && worker.id.generation == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(started.elapsed().as_secs_f64() * 1e3);
        dspex.shutdown().await.expect("shutdown");
    }
    summary.set("startup.replace_ms", median_and_spread(&mut samples).0);
}

async fn throughput(summary: &mut Summary) {
    // The LM of the overhead row (DummyLM answering from a list), so that the rate compares with
    // in-process DSPy's.
    let calls = 4000;
    let answers = Value::List(
        (0..calls + 500)
            .map(|_| answer(&[("answer", "a"), ("confidence", "0.5")]))
            .collect(),
    );
    for workers in [1, 2] {
        let dspex = start(workers, Lm::dummy(answers.clone()), 64).await;
        fan_out(&dspex, 500, 64).await; // warm-up
        let ms = fan_out(&dspex, calls, 64).await;
        summary.set(
            &format!("throughput.workers_{workers}_per_s"),
            calls as f64 / ms * 1e3,
        );
        dspex.shutdown().await.expect("shutdown");
    }
    let ratio = summary.0["throughput.workers_2_per_s"] / summary.0["throughput.workers_1_per_s"];
    summary.set("throughput.ratio_2_to_1", ratio);
    // Against one in-process Python thread's rate in this run (1e6 / its p50), when measured.
    if let Some(python_p50) = summary.0.get("overhead.python_p50_us").copied() {
        summary.set("throughput.in_process_per_s", 1e6 / python_p50);
        summary.set(
            "throughput.workers_2_vs_in_process",
            summary.0["throughput.workers_2_per_s"] / (1e6 / python_p50),
        );
    }
}

/// RSS and PSS of `pid` in MB, from /proc.
fn memory_of(pid: u32) -> (f64, f64) {
    let read_kb = |file: &str, key: &str| -> f64 {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        read_kb("status", "VmRSS:") / 1024.0,
        read_kb("smaps_rollup", "Pss:") / 1024.0,
    )
}

/// Total PSS in MB of a pool of `workers`: the forked workers, their shims and the fork server.
async fn pool_memory(workers: usize, summary: Option<&mut Summary>) -> f64 {
    let dspex = start(workers, sleepy_lm(0.0), 64).await;
    fan_out(&dspex, 64, 16).await; // every worker has run DSPy
    let pool = dspex.bridge().pool();
    // Holding one checkout per worker gives each worker's connection (the least-loaded rule
    // spreads them), and so the forked worker's own pid.
    let mut checkouts = Vec::new();
    for _ in 0..workers {
        checkouts.push(pool.checkout().await.expect("checkout"));
    }
    let mut pids: Vec<u32> = checkouts.iter().map(|c| c.connection().pid()).collect();
    drop(checkouts);
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), workers, "one pid per worker");
    let mut total = 0.0;
    let mut rows = Vec::new();
    for (i, pid) in pids.iter().enumerate() {
        let (rss, pss) = memory_of(*pid);
        rows.push((format!("memory.worker_{i}_rss_mb"), rss));
        rows.push((format!("memory.worker_{i}_pss_mb"), pss));
        total += pss;
    }
    // The shims and the fork server (the fork server's command line names the socket directory).
    let socket_dir = pool.adapter().socket_dir().to_string_lossy().into_owned();
    let mut others = 0.0;
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(
            &std::fs::read(entry.path().join("cmdline")).unwrap_or_default(),
        )
        .into_owned();
        if cmdline.contains(&socket_dir) && !pids.contains(&pid) {
            others += memory_of(pid).1;
        }
    }
    total += others;
    if let Some(summary) = summary {
        for (key, value) in rows {
            summary.set(&key, value);
        }
        summary.set("memory.fork_server_and_shims_pss_mb", others);
        summary.set(&format!("memory.pool_{workers}_pss_mb"), total);
    }
    dspex.shutdown().await.expect("shutdown");
    total
}

async fn memory(summary: &mut Summary) {
    let one = pool_memory(1, None).await;
    let four = pool_memory(4, Some(summary)).await;
    summary.set("memory.pool_1_pss_mb", one);
    summary.set("memory.pss_per_extra_worker_mb", (four - one) / 3.0);
}

/// (what, Python key, dspex key, unit, ratio as (numerator key, denominator key)).
type Row = (
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
);

/// What produced the figures: the machine, the Python packages, the git revision.
fn provenance(environment: &PythonEnvironment) -> Vec<(String, serde_json::Value)> {
    let mut meta = Vec::new();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    meta.push(("meta.cores".to_owned(), cores.into()));
    let memory_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .unwrap_or_default();
    meta.push((
        "meta.memory_gb".to_owned(),
        ((memory_kb / 1024.0 / 1024.0 * 10.0).round() / 10.0).into(),
    ));
    let versions = Command::new(environment.python())
        .args([
            "-c",
            "import json, sys, importlib.metadata as m; print(json.dumps({'python': sys.version.split()[0], 'dspy': m.version('dspy'), 'grpcio': m.version('grpcio')}))",
        ])
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
    for package in ["python", "dspy", "grpcio"] {
        let version = versions
            .as_ref()
            .and_then(|v| v[package].as_str())
            .unwrap_or("unknown");
        meta.push((format!("meta.{package}"), version.into()));
    }
    let revision = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    meta.push(("meta.git_revision".to_owned(), revision.into()));
    meta
}

fn print_table(summary: &Summary) {
    let s = &summary.0;
    let get = |key: &str| s.get(key).copied();
    let rows: &[Row] = &[
        (
            "overhead p50 (sequential Predict, DummyLM)",
            Some("overhead.python_p50_us"),
            "overhead.dspex_p50_us",
            "µs",
            Some(("overhead.dspex_p50_us", "overhead.python_p50_us")),
        ),
        (
            "overhead p99",
            Some("overhead.python_p99_us"),
            "overhead.dspex_p99_us",
            "µs",
            Some(("overhead.dspex_p99_us", "overhead.python_p99_us")),
        ),
        (
            "  (Python's own async path, p50)",
            Some("overhead.python_async_p50_us"),
            "overhead.dspex_p50_us",
            "µs",
            Some(("overhead.dspex_p50_us", "overhead.python_async_p50_us")),
        ),
        (
            "  CPU per call: worker (vs in-process Python)",
            Some("overhead.cpu_python_us"),
            "overhead.cpu_worker_us",
            "µs",
            Some(("overhead.cpu_worker_us", "overhead.cpu_python_us")),
        ),
        (
            "  CPU per call: owner (Rust)",
            None,
            "overhead.cpu_owner_us",
            "µs",
            None,
        ),
        (
            "orchestration 256 @16, 20 ms LM (ideal 320)",
            Some("orchestration.python_ms"),
            "orchestration.dspex_ms",
            "ms",
            Some(("orchestration.dspex_ms", "orchestration.ideal_ms")),
        ),
        (
            "orchestration 4096 @512, 4 workers (ideal 160)",
            Some("orchestration_large.python_ms"),
            "orchestration_large.dspex_ms",
            "ms",
            Some((
                "orchestration_large.dspex_ms",
                "orchestration_large.ideal_ms",
            )),
        ),
        (
            "startup, 1 worker (fork server)",
            None,
            "startup.workers_1_ms",
            "ms",
            None,
        ),
        (
            "startup, 4 workers",
            None,
            "startup.workers_4_ms",
            "ms",
            Some(("startup.workers_4_ms", "startup.workers_1_ms")),
        ),
        (
            "startup, 8 workers",
            None,
            "startup.workers_8_ms",
            "ms",
            Some(("startup.workers_8_ms", "startup.workers_1_ms")),
        ),
        (
            "startup, 100 workers",
            None,
            "startup.workers_100_ms",
            "ms",
            None,
        ),
        (
            "  plain spawn, 1 worker",
            None,
            "startup.spawn_workers_1_ms",
            "ms",
            None,
        ),
        (
            "  plain spawn, 8 workers",
            None,
            "startup.spawn_workers_8_ms",
            "ms",
            Some(("startup.spawn_workers_8_ms", "startup.spawn_workers_1_ms")),
        ),
        (
            "replace one crashed worker",
            None,
            "startup.replace_ms",
            "ms",
            None,
        ),
        (
            "throughput @64, 1 worker (DummyLM, as overhead)",
            None,
            "throughput.workers_1_per_s",
            "/s",
            None,
        ),
        (
            "throughput @64, 2 workers",
            None,
            "throughput.workers_2_per_s",
            "/s",
            Some(("throughput.workers_2_per_s", "throughput.workers_1_per_s")),
        ),
        (
            "  2 workers vs one in-process Python thread (1e6 / p50)",
            Some("throughput.in_process_per_s"),
            "throughput.workers_2_per_s",
            "/s",
            Some(("throughput.workers_2_per_s", "throughput.in_process_per_s")),
        ),
        (
            "BootstrapFewShot, 20 examples x 2 steps, 20 ms LM",
            Some("optimize.python_ms"),
            "optimize.dspex_ms",
            "ms",
            Some(("optimize.dspex_ms", "optimize.python_ms")),
        ),
        (
            "telemetry off: p50 per call (as overhead)",
            None,
            "telemetry.off_p50_us",
            "µs",
            None,
        ),
        (
            "telemetry on: fmt subscriber + Prometheus recorder",
            None,
            "telemetry.on_p50_us",
            "µs",
            Some(("telemetry.on_p50_us", "telemetry.off_p50_us")),
        ),
        (
            "streaming, slow LM: first piece of the answer",
            None,
            "streaming.first_piece_ms",
            "ms",
            None,
        ),
        (
            "streaming, slow LM: whole answer",
            None,
            "streaming.whole_answer_ms",
            "ms",
            Some(("streaming.whole_answer_ms", "streaming.first_piece_ms")),
        ),
        (
            "Ray: overhead p50, 1 worker (local | on Ray)",
            Some("ray.local_p50_us"),
            "ray.remote_p50_us",
            "µs",
            Some(("ray.remote_p50_us", "ray.local_p50_us")),
        ),
        (
            "Ray: overhead p99",
            Some("ray.local_p99_us"),
            "ray.remote_p99_us",
            "µs",
            Some(("ray.remote_p99_us", "ray.local_p99_us")),
        ),
        (
            "Ray: throughput @64, 2 workers, DummyLM",
            Some("ray.throughput_dummy_local_per_s"),
            "ray.throughput_dummy_remote_per_s",
            "/s",
            Some((
                "ray.throughput_dummy_remote_per_s",
                "ray.throughput_dummy_local_per_s",
            )),
        ),
        (
            "Ray: throughput @64, 2 workers, 20 ms LM",
            Some("ray.throughput_sleepy_local_per_s"),
            "ray.throughput_sleepy_remote_per_s",
            "/s",
            Some((
                "ray.throughput_sleepy_remote_per_s",
                "ray.throughput_sleepy_local_per_s",
            )),
        ),
        (
            "Ray: startup, 8 workers",
            Some("ray.startup_8_local_ms"),
            "ray.startup_8_remote_ms",
            "ms",
            Some(("ray.startup_8_remote_ms", "ray.startup_8_local_ms")),
        ),
        (
            "Ray: owner PSS per remote worker (driver + shims) / 8",
            None,
            "ray.owner_pss_per_worker_mb",
            "MB",
            None,
        ),
        (
            "  Ray driver PSS | one shim PSS",
            Some("ray.owner_driver_pss_mb"),
            "ray.owner_shim_pss_mb",
            "MB",
            None,
        ),
        (
            "memory: pool of 1, PSS (worker, shim, fork server)",
            None,
            "memory.pool_1_pss_mb",
            "MB",
            None,
        ),
        (
            "memory: pool of 4, PSS",
            None,
            "memory.pool_4_pss_mb",
            "MB",
            None,
        ),
        (
            "memory: PSS per extra worker",
            None,
            "memory.pss_per_extra_worker_mb",
            "MB",
            None,
        ),
    ];
    println!(
        "\n{:<52} {:>12} {:>12} {:<4} {:>8}",
        "measurement", "Python DSPy", "dspex", "unit", "ratio"
    );
    println!("{}", "-".repeat(92));
    for (what, python, dspex, unit, ratio) in rows {
        let Some(value) = get(dspex) else { continue };
        let python = python
            .and_then(get)
            .map_or("—".to_owned(), |p| format!("{p:.1}"));
        let ratio = ratio
            .and_then(|(a, b)| Some(get(a)? / get(b)?))
            .map_or(String::new(), |r| format!("{r:.2}"));
        println!("{what:<52} {python:>12} {value:>12.1} {unit:<4} {ratio:>8}");
    }
    println!(
        "(ratios: dspex / Python, dspex / ideal, or N workers / 1 worker; Ray rows: the first \
         column is local workers, the ratio on Ray / local)"
    );
    if let Some(ratio) = get("ray.overhead_ratio_p50") {
        println!(
            "Ray overhead ratio over alternating blocks: p50 median {ratio:.2} (min {:.2}, max {:.2})",
            get("ray.overhead_ratio_p50_min").unwrap_or_default(),
            get("ray.overhead_ratio_p50_max").unwrap_or_default(),
        );
    }
    if let (Some(r50), Some(r99)) = (get("overhead.ratio_p50"), get("overhead.ratio_p99")) {
        println!(
            "overhead ratio over {} alternating blocks of {} calls: p50 median {r50:.2} (min {:.2}, max {:.2}), p99 median {r99:.2} (min {:.2}, max {:.2})",
            get("overhead.rounds").unwrap_or_default(),
            get("overhead.calls_per_round").unwrap_or_default(),
            get("overhead.ratio_p50_min").unwrap_or_default(),
            get("overhead.ratio_p50_max").unwrap_or_default(),
            get("overhead.ratio_p99_min").unwrap_or_default(),
            get("overhead.ratio_p99_max").unwrap_or_default(),
        );
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, out] = &args[..]
        && mode == ray::CHILD_ARG
    {
        tokio::spawn(ray::child(PathBuf::from(out)))
            .await
            .expect("the Ray group");
        return;
    }
    if let Ok(mode) = std::env::var(telemetry::CHILD) {
        // In a spawned task, as the overhead group runs (see below).
        tokio::spawn(async move { telemetry::child(&mode).await })
            .await
            .expect("the telemetry child");
        return;
    }
    let environment = tokio::task::spawn_blocking(|| {
        PythonEnvironment::resolve(&EnvironmentOptions::default()).expect("Python environment")
    })
    .await
    .expect("provisioning");
    let mut summary = Summary(BTreeMap::new());
    let only: Vec<String> = std::env::args().skip(1).collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let started = Instant::now();
    if wanted("overhead") {
        // In a spawned task, as a service's request handlers call dspex (the future `main`
        // blocks on runs on a thread of its own, woken from the runtime's threads on every call).
        let environment = environment.clone();
        summary = tokio::spawn(async move {
            overhead(&environment, &mut summary).await;
            summary
        })
        .await
        .expect("the overhead group");
    }
    if wanted("orchestration") {
        orchestration(&environment, &mut summary).await;
    }
    if wanted("startup") {
        startup(&mut summary).await;
    }
    if wanted("throughput") {
        throughput(&mut summary).await;
    }
    if wanted("memory") {
        memory(&mut summary).await;
    }
    if wanted("optimize") {
        optimize::optimize(&environment, &mut summary).await;
    }
    if wanted("telemetry") {
        tokio::task::block_in_place(|| telemetry::telemetry(&mut summary));
    }
    if wanted("streaming") {
        streaming::streaming(&mut summary).await;
    }
    if wanted("ray") {
        tokio::task::block_in_place(|| ray::ray(&mut summary));
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dspex-bench");
    std::fs::create_dir_all(&dir).expect("target dir");
    let mut record: serde_json::Map<String, serde_json::Value> = summary
        .0
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(*v)))
        .collect();
    record.extend(provenance(&environment));
    let json = serde_json::to_string_pretty(&record).expect("json");
    std::fs::write(dir.join("summary.json"), json).expect("summary.json");
    print_table(&summary);
    println!(
        "wrote {} ({:.0} s)",
        dir.join("summary.json").display(),
        started.elapsed().as_secs_f64()
    );
}
