//! What the reliability tests share: a runtime, the test Python directory, LMs with faults, and
//! process inspection through /proc.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use dspex::prelude::*;
use dspex::snakepit_grpc_bridge::{Map, Value};
use dspex::{Dspex, DspexBuilder, Lm};
use tokio::runtime::Runtime;

pub static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
});

/// Runs a test body on the shared runtime.
pub fn run<F: Future>(body: F) -> F::Output {
    RUNTIME.block_on(body)
}

/// Answer the question.
#[dspy_signature]
pub struct QA {
    #[input]
    pub question: String,
    #[output]
    pub answer: String,
}

/// The question `<qN>`, which the LMs of `numbered_answers` answer with `aN`.
pub fn ask(i: usize) -> QAInput {
    QAInput {
        question: format!("<q{i}>"),
    }
}

pub fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

/// A `Dspex` builder whose workers find the test Python modules.
pub fn builder() -> DspexBuilder {
    Dspex::builder().python_path(python_dir())
}

/// A `Dspex` builder on `lm` with `workers` workers, whose workers find the examples' LMs
/// (`dspex_rule_lm.RuleLM`, `dspex_stream_lm.StreamLM`).
pub fn example_lm_builder(lm: Lm, workers: usize) -> DspexBuilder {
    Dspex::builder()
        .lm(lm)
        .workers(workers)
        .python_path(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../dspex/examples/python"
        ))
}

/// The answer map of `question -> answer`: `<qN>` gets `aN`, for `n` questions.
pub fn numbered_answers(n: usize) -> Map {
    (0..n)
        .map(|i| {
            (
                format!("<q{i}>"),
                Value::Map(
                    [("answer".to_owned(), Value::from(format!("a{i}")))]
                        .into_iter()
                        .collect(),
                ),
            )
        })
        .collect()
}

/// `dspex_faulty_lm.FaultyLM` with these keyword arguments.
pub fn faulty_lm(answers: Map, extra: &[(&str, Value)]) -> Lm {
    let mut kwargs: Map = extra
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    kwargs.insert("answers".to_owned(), Value::Map(answers));
    Lm::custom("dspex_faulty_lm.FaultyLM", kwargs)
}

/// Polls `condition` every 20 ms until it holds or `within` passes; returns whether it held.
pub async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `signal` to `pid`.
pub fn kill(pid: u32, signal: i32) {
    // SAFETY: kill(2) with a pid we read from a live worker; no memory is involved.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// The number of open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The resident set size of `pid` in kB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// One line of a `FaultyLM` events file: an LM request of `question` began, or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmEvent {
    Start { question: String },
    End { question: String, cancelled: bool },
}

/// The events `FaultyLM` recorded in `path` (see `events_file` in `dspex_faulty_lm.py`), in the
/// order they happened.
pub fn lm_events(path: &std::path::Path) -> Vec<LmEvent> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["start", question, _pid] => Some(LmEvent::Start {
                    question: (*question).to_owned(),
                }),
                ["end", question, _pid, outcome] => Some(LmEvent::End {
                    question: (*question).to_owned(),
                    cancelled: *outcome == "cancelled",
                }),
                _ => None,
            }
        })
        .collect()
}

/// What the LM requests of each question did: how many started, the most that ran at once, how
/// many still run, and how many ended by cancellation.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestTally {
    pub started: usize,
    pub most_at_once: usize,
    pub running: usize,
    pub cancelled: usize,
}

pub fn tally(events: &[LmEvent]) -> std::collections::BTreeMap<String, RequestTally> {
    let mut tallies: std::collections::BTreeMap<String, RequestTally> = Default::default();
    for event in events {
        match event {
            LmEvent::Start { question } => {
                let t = tallies.entry(question.clone()).or_default();
                t.started += 1;
                t.running += 1;
                t.most_at_once = t.most_at_once.max(t.running);
            }
            LmEvent::End {
                question,
                cancelled,
            } => {
                let t = tallies.entry(question.clone()).or_default();
                t.running = t.running.saturating_sub(1);
                t.cancelled += usize::from(*cancelled);
            }
        }
    }
    tallies
}

/// An empty protobuf message: `PingRequest`, and enough of `PingResponse` to see success.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

/// A bare gRPC `Ping` to `channel` with an optional `authorization` value.
pub async fn raw_ping(
    channel: tonic::transport::Channel,
    authorization: Option<&str>,
) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(Empty {});
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
    }
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/snakepit.bridge.v1.BridgeService/Ping",
    );
    grpc.unary::<Empty, Empty, _>(request, path, tonic_prost::ProstCodec::default())
        .await
        .map(drop)
}

/// A TLS gRPC channel to `host_port` that trusts exactly `ca_pem`, for the name `localhost` (the
/// run's self-signed certificate).
pub async fn tls_channel(host_port: &str, ca_pem: &[u8]) -> tonic::transport::Channel {
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    tonic::transport::Endpoint::try_from(format!("https://{host_port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}
