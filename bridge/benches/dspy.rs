//! A typed Predict through the bridge beside the same call made in-process in Python (same
//! signature, same DummyLM, same machine, same run). Prints a table.

use std::process::Command;
use std::time::Instant;

use snakepit_grpc_bridge::api::dspy::{FieldType, Lm, SignatureSpec};
use snakepit_grpc_bridge::environment::{EnvironmentOptions, PythonEnvironment};
use snakepit_grpc_bridge::{Bridge, Map, Value, args};

const CALLS: usize = 2000;
const WARMUP: usize = 200;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

fn python_baseline(environment: &PythonEnvironment) -> (f64, f64) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/dspy_baseline.py");
    let output = Command::new(environment.python())
        .arg(script)
        .arg(CALLS.to_string())
        .output()
        .expect("the Python baseline runs");
    assert!(
        output.status.success(),
        "baseline failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let number = |key: &str| -> f64 {
        let start = text.find(key).expect("key in the baseline's output") + key.len() + 3;
        text[start..]
            .split([',', '}'])
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    (number("p50_us"), number("p99_us"))
}

#[tokio::main]
async fn main() {
    let environment =
        PythonEnvironment::resolve(&EnvironmentOptions::default()).expect("Python environment");
    let (python_p50, python_p99) = python_baseline(&environment);

    let answers: Map = (0..CALLS + WARMUP)
        .map(|i| {
            (
                format!("<q{i}>"),
                Value::Map(args([
                    ("answer", format!("a{i}")),
                    ("confidence", "0.5".into()),
                ])),
            )
        })
        .collect();
    let bridge = Bridge::builder()
        .workers(1)
        .lm(Lm::dummy(Value::Map(answers)))
        .start()
        .await
        .expect("bridge starts");
    let signature = SignatureSpec::new("QA")
        .instructions("Answer the question from the context.")
        .input("question", FieldType::String)
        .input("context", FieldType::String)
        .output("answer", FieldType::String)
        .output("confidence", FieldType::Float);
    let mut times = Vec::with_capacity(CALLS);
    for i in 0..CALLS + WARMUP {
        let inputs = args([
            ("question", format!("what is <q{i}>?")),
            ("context", "some context".to_owned()),
        ]);
        let started = Instant::now();
        let out = bridge.predict(&signature, inputs).await.expect("predict");
        let elapsed = started.elapsed().as_secs_f64() * 1e6;
        assert_eq!(out.outputs["answer"], Value::from(format!("a{i}")));
        assert_eq!(out.outputs["confidence"], Value::Float(0.5));
        if i >= WARMUP {
            times.push(elapsed);
        }
    }
    times.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
    bridge.shutdown().await.expect("shutdown");

    println!(
        "typed Predict, {CALLS} sequential calls, DummyLM (question, context -> answer, confidence: float)"
    );
    println!("{:<34} {:>10} {:>10}", "", "p50 (µs)", "p99 (µs)");
    println!(
        "{:<34} {:>10.0} {:>10.0}",
        "in-process Python DSPy", python_p50, python_p99
    );
    println!(
        "{:<34} {:>10.0} {:>10.0}",
        "Rust through the bridge", p50, p99
    );
    println!(
        "{:<34} {:>10.2} {:>10.2}",
        "ratio (bridge / Python)",
        p50 / python_p50,
        p99 / python_p99
    );
}
