//! The Ray group: workers on a local Ray cluster beside local workers, in the same run.
//!
//! The group runs in a copy of this program inside a network namespace of its own (Ray binds some
//! of its ports to every interface): `dspex-bench ray-child OUT` starts a Ray head on loopback,
//! measures, writes its figures to `OUT` as JSON, and stops the head. Skipped, with a message,
//! when Ray is not provisioned on this machine (the Ray tests provision it).
//!
//! - Overhead: sequential typed predictions (DummyLM, as the overhead group) on one local worker
//!   and one Ray worker, in alternating blocks; the median of the blocks' p50 ratios.
//! - Throughput: 2 local workers and 2 Ray workers at 64 in flight, with the DummyLM (CPU-bound:
//!   the two cores are shared by both sides' workers, the owner and Ray's own processes) and with
//!   a 20 ms LM (what an LM provider's latency looks like).
//! - Start-up of 8 Ray workers (and of 8 local ones), from nothing to all ready.
//! - The owner's memory per remote worker: the Ray driver's and the shims' PSS, over 8 workers.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dspex::Value;
use dspex::prelude::*;
use dspex::snakepit_grpc_bridge::environment::{EnvironmentOptions, PythonEnvironment};
use dspex_tests::ray_cluster::{RayCluster, inside_own_network_namespace};

use crate::{
    Summary, answer, bench_python_dir, dspex_block, fan_out, median_and_spread, memory_of,
    percentile, sleepy_lm,
};

/// The argument that makes this program the Ray group's copy in its namespace.
pub(crate) const CHILD_ARG: &str = "ray-child";

const BLOCKS: usize = 10;
const CALLS: usize = 200;
const WARMUP: usize = 200;
const THROUGHPUT_CALLS: usize = 2000;

/// Runs the group in its own network namespace and takes its figures into `summary`.
pub(crate) fn ray(summary: &mut Summary) {
    let options = EnvironmentOptions::default().with_ray();
    let environment = match PythonEnvironment::existing(&options) {
        Ok(Some(environment)) => environment,
        Ok(None) => {
            eprintln!(
                "ray: skipped: Ray is not provisioned on this machine \
                 (`cargo test -p dspex-tests --test ray` provisions it)"
            );
            return;
        }
        Err(e) => {
            eprintln!("ray: skipped: {e}");
            return;
        }
    };
    let out = tempfile_path();
    let args: Vec<OsString> = vec![CHILD_ARG.into(), out.clone().into()];
    let inside = inside_own_network_namespace(environment.python(), &args);
    assert!(!inside, "the Ray group's copy runs `ray-child`");
    let figures: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("the Ray group's figures"))
            .expect("JSON");
    let _ = std::fs::remove_file(&out);
    for (key, value) in figures {
        if let Some(value) = value.as_f64() {
            summary.set(&key, value);
        }
    }
}

fn tempfile_path() -> String {
    std::env::temp_dir()
        .join(format!("dspex-bench-ray-{}.json", std::process::id()))
        .to_string_lossy()
        .into_owned()
}

/// The copy in the namespace: measures and writes the figures to `out`.
pub(crate) async fn child(out: PathBuf) {
    let environment = PythonEnvironment::existing(&EnvironmentOptions::default().with_ray())
        .expect("the Ray environment")
        .expect("Ray is provisioned");
    let cluster = RayCluster::start(environment.python());
    cluster.probe(environment.python(), 1);
    let mut summary = Summary(Default::default());
    overhead(&cluster, &mut summary).await;
    throughput(&cluster, &mut summary).await;
    startup_and_memory(&cluster, &mut summary).await;
    drop(cluster);
    let record: serde_json::Map<String, serde_json::Value> = summary
        .0
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::from(v)))
        .collect();
    std::fs::write(&out, serde_json::to_string(&record).expect("JSON")).expect("the figures");
}

/// A pool of `workers` on `lm`, on the cluster when `ray` is given.
async fn pool(workers: usize, lm: Lm, ray: Option<&RayCluster>) -> Dspex {
    let mut builder = Dspex::builder()
        .lm(lm)
        .workers(workers)
        .python_path(bench_python_dir())
        .import("dspex_bench_lm")
        .bridge(|b| {
            b.pool(|p| {
                p.max_in_flight_per_worker(64)
                    .queue_size(1 << 16)
                    .request_timeout(Some(Duration::from_secs(300)))
            })
        });
    if let Some(cluster) = ray {
        builder = builder.ray(cluster.address.as_str());
    }
    builder.start().await.expect("dspex starts")
}

/// The DummyLM of the overhead group: `a{i}` for the i-th call.
fn numbered_lm(calls: usize) -> Lm {
    Lm::dummy(Value::List(
        (0..calls)
            .map(|i| answer(&[("answer", &format!("a{i}")), ("confidence", "0.5")]))
            .collect(),
    ))
}

async fn overhead(cluster: &RayCluster, summary: &mut Summary) {
    let total = WARMUP + BLOCKS * CALLS;
    let local = pool(1, numbered_lm(total), None).await;
    let remote = pool(1, numbered_lm(total), Some(cluster)).await;
    let local_pid = local.bridge().ping().await.expect("ping").pid;
    let remote_pid = remote.bridge().ping().await.expect("ping").pid;
    dspex_block(&local, local_pid, WARMUP, 0).await;
    dspex_block(&remote, remote_pid, WARMUP, 0).await;
    let (mut ratios, mut local_times, mut remote_times) = (Vec::new(), Vec::new(), Vec::new());
    for block in 0..BLOCKS {
        let first = WARMUP + block * CALLS;
        let (mut here, _) = dspex_block(&local, local_pid, CALLS, first).await;
        let (mut there, _) = dspex_block(&remote, remote_pid, CALLS, first).await;
        here.times.sort_by(f64::total_cmp);
        there.times.sort_by(f64::total_cmp);
        ratios.push(percentile(&there.times, 0.5) / percentile(&here.times, 0.5));
        local_times.extend(here.times);
        remote_times.extend(there.times);
    }
    local_times.sort_by(f64::total_cmp);
    remote_times.sort_by(f64::total_cmp);
    let (ratio, low, high) = median_and_spread(&mut ratios);
    summary.set("ray.local_p50_us", percentile(&local_times, 0.5));
    summary.set("ray.remote_p50_us", percentile(&remote_times, 0.5));
    summary.set("ray.local_p99_us", percentile(&local_times, 0.99));
    summary.set("ray.remote_p99_us", percentile(&remote_times, 0.99));
    summary.set("ray.overhead_ratio_p50", ratio);
    summary.set("ray.overhead_ratio_p50_min", low);
    summary.set("ray.overhead_ratio_p50_max", high);
    local.shutdown().await.expect("shutdown");
    remote.shutdown().await.expect("shutdown");
}

async fn throughput(cluster: &RayCluster, summary: &mut Summary) {
    let calls = THROUGHPUT_CALLS;
    for (lm_name, lm) in [
        (
            "dummy",
            Lm::dummy(Value::List(
                (0..2 * calls + 1000)
                    .map(|_| answer(&[("answer", "a"), ("confidence", "0.5")]))
                    .collect(),
            )),
        ),
        ("sleepy", sleepy_lm(20.0)),
    ] {
        let calls = if lm_name == "sleepy" {
            calls / 2
        } else {
            calls
        };
        let mut rates = [Vec::new(), Vec::new()];
        let local = pool(2, lm.clone(), None).await;
        let remote = pool(2, lm, Some(cluster)).await;
        fan_out(&local, 250, 64).await; // warm-up
        fan_out(&remote, 250, 64).await;
        // Alternating rounds, as the machine's speed drifts.
        for _ in 0..3 {
            for (side, dspex) in [&local, &remote].into_iter().enumerate() {
                let ms = fan_out(dspex, calls / 3, 64).await;
                rates[side].push((calls / 3) as f64 / ms * 1e3);
            }
        }
        let [mut here, mut there] = rates;
        let here = median_and_spread(&mut here).0;
        let there = median_and_spread(&mut there).0;
        summary.set(&format!("ray.throughput_{lm_name}_local_per_s"), here);
        summary.set(&format!("ray.throughput_{lm_name}_remote_per_s"), there);
        summary.set(&format!("ray.throughput_{lm_name}_ratio"), there / here);
        local.shutdown().await.expect("shutdown");
        remote.shutdown().await.expect("shutdown");
    }
}

/// PSS in MB of the processes whose command line names `needle`.
fn pss_of_processes_naming(needle: &str) -> (f64, usize) {
    let mut total = 0.0;
    let mut count = 0;
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            total += memory_of(pid).1;
            count += 1;
        }
    }
    (total, count)
}

async fn startup_and_memory(cluster: &RayCluster, summary: &mut Summary) {
    let mut local = Vec::new();
    let mut remote = Vec::new();
    for round in 0..3 {
        let started = Instant::now();
        let dspex = pool(8, sleepy_lm(0.0), None).await;
        local.push(started.elapsed().as_secs_f64() * 1e3);
        dspex.shutdown().await.expect("shutdown");
        let started = Instant::now();
        let dspex = pool(8, sleepy_lm(0.0), Some(cluster)).await;
        remote.push(started.elapsed().as_secs_f64() * 1e3);
        if round == 0 {
            fan_out(&dspex, 64, 16).await; // every worker has served
            let adapter = dspex.bridge().pool().adapter();
            let socket_dir = adapter.socket_dir().to_string_lossy().into_owned();
            let driver = adapter.ray_driver_pid().expect("the Ray driver");
            let (driver_rss, driver_pss) = memory_of(driver);
            // The shims name the driver's control socket, in the private directory.
            let (all, count) = pss_of_processes_naming(&format!("{socket_dir}/ray.sock"));
            let shims = all - driver_pss;
            summary.set("ray.owner_driver_rss_mb", driver_rss);
            summary.set("ray.owner_driver_pss_mb", driver_pss);
            summary.set("ray.owner_shim_pss_mb", shims / (count - 1).max(1) as f64);
            summary.set("ray.owner_pss_per_worker_mb", all / 8.0);
        }
        dspex.shutdown().await.expect("shutdown");
    }
    summary.set("ray.startup_8_local_ms", median_and_spread(&mut local).0);
    summary.set("ray.startup_8_remote_ms", median_and_spread(&mut remote).0);
}
