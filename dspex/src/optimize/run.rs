//! One optimiser run: a Rust program tuned by one of DSPy's optimisers in a worker session.
//!
//! The session holds a `ProgramHost` (`python/snakepit_bridge/programs.py`) whose student has
//! the program's predictors; its `forward` calls back into Rust (the session's Rust tool
//! `dspex.forward`) with a token naming the program copy and trace it runs in, and the Rust
//! `forward` runs on a copy of the program whose predictors send their calls, with that token,
//! to that copy. The metric is the Rust tool `dspex.metric`. See ARCHITECTURE.md.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use snakepit_grpc_bridge::api::dspy::{CallOptions, Instance};
use snakepit_grpc_bridge::api::tools::ToolError;
use snakepit_grpc_bridge::{Map, Value};

use crate::error::{Error, Result};
use crate::example::Example;
use crate::metric::{Metric, checked_score, panic_message};
use crate::program::Module;
use crate::program::with_states;
use crate::signature::{SignatureInput, SignatureOutput};

/// What a [`CompileProgress`] event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressKind {
    /// The metric scored one example.
    Scored,
    /// The optimiser evaluated one candidate program on a dataset (a trial of MIPROv2, a
    /// candidate of COPRO or of random search: each `dspy.Evaluate` of the run).
    Trial,
}

/// Progress of a compilation: an event after each metric call and after each trial.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CompileProgress {
    /// What this event reports.
    pub kind: ProgressKind,
    /// The optimiser.
    pub optimizer: &'static str,
    /// Runs of the program's `forward` so far.
    pub forwards: usize,
    /// Metric calls so far.
    pub metric_calls: usize,
    /// The last score.
    pub last_score: f64,
    /// The best score so far.
    pub best_score: f64,
    /// Candidate programs evaluated so far.
    pub trials: usize,
    /// The last candidate's score (mean over its dataset), if the optimiser evaluates candidates.
    pub trial_score: Option<f64>,
    /// The best candidate's score so far.
    pub best_trial_score: Option<f64>,
    /// Time since the compilation started.
    pub elapsed: Duration,
}

/// A progress callback.
pub(crate) type OnProgress = Arc<dyn Fn(&CompileProgress) + Send + Sync>;

/// What one optimiser is asked: its DSPy name, constructor and `compile` keyword arguments.
pub(crate) struct Plan {
    pub(crate) optimizer: &'static str,
    pub(crate) init: Map,
    pub(crate) compile: Map,
}

/// The data and callbacks of a run.
pub(crate) struct Run<'a, I, O> {
    pub(crate) trainset: &'a [Example<I, O>],
    pub(crate) valset: Option<&'a [Example<I, O>]>,
    pub(crate) metric: Option<Arc<dyn Metric<I, O>>>,
    pub(crate) progress: Option<OnProgress>,
}

/// The Rust forward tool's and metric tool's names (`programs.py` has the same).
const FORWARD_TOOL: &str = "dspex.forward";
const METRIC_TOOL: &str = "dspex.metric";
const PROGRESS_TOOL: &str = "dspex.progress";

fn rows<I: SignatureInput, O: SignatureOutput>(examples: &[Example<I, O>]) -> Value {
    Value::List(
        examples
            .iter()
            .map(|e| {
                let mut row = e.input.to_inputs();
                row.extend(e.output.to_outputs());
                Value::Map(row)
            })
            .collect(),
    )
}

fn compile_error(optimizer: &str, message: impl Into<String>) -> Error {
    Error::Compile {
        optimizer: optimizer.to_owned(),
        message: message.into(),
    }
}

/// Compiles `program` by `plan`; returns the tuned copy.
pub(crate) async fn compile<P: Module>(
    program: &P,
    plan: Plan,
    run: Run<'_, P::Input, P::Output>,
) -> Result<P> {
    let optimizer = plan.optimizer;
    if run.trainset.is_empty() {
        return Err(compile_error(optimizer, "the trainset is empty"));
    }
    if run.valset.is_some_and(<[_]>::is_empty) {
        return Err(compile_error(optimizer, "the valset is empty"));
    }
    let predictors = program.predictors();
    let Some((_, first)) = predictors.first() else {
        return Err(compile_error(optimizer, "the program has no predictor"));
    };
    let dspex = first.dspex().clone();
    let session = dspex.bridge().create_session().await?;
    let mut entries = Vec::new();
    program.__visit("", &mut |path, predictor| {
        entries.push(predictor.host_entry(path))
    });
    let mut kwargs = Map::new();
    kwargs.insert("modules".into(), Value::List(entries));
    let host = session
        .create_instance(
            "snakepit_bridge.programs.ProgramHost",
            None,
            Vec::new(),
            kwargs,
            None,
        )
        .await?;

    let started = Instant::now();
    let counters = Arc::new(Mutex::new(CompileProgress {
        kind: ProgressKind::Scored,
        optimizer,
        forwards: 0,
        metric_calls: 0,
        last_score: 0.0,
        best_score: f64::NEG_INFINITY,
        trials: 0,
        trial_score: None,
        best_trial_score: None,
        elapsed: Duration::ZERO,
    }));
    session
        .register_rust_tool(
            FORWARD_TOOL,
            "runs the Rust program's forward",
            forward_tool(program.clone(), host.clone(), counters.clone()),
        )
        .await?;
    if let Some(report) = &run.progress {
        session
            .register_rust_tool(
                PROGRESS_TOOL,
                "the optimiser's trials",
                trial_tool(counters.clone(), started, report.clone()),
            )
            .await?;
    }
    let mut init = plan.init;
    if let Some(metric) = &run.metric {
        init.insert("$metric".into(), Value::Bool(true));
        let examples: Arc<Named<P::Input, P::Output>> = Arc::new(
            run.trainset
                .iter()
                .enumerate()
                .map(|(i, e)| (format!("trainset example #{i}"), e.clone()))
                .chain(
                    run.valset
                        .unwrap_or_default()
                        .iter()
                        .enumerate()
                        .map(|(i, e)| (format!("valset example #{i}"), e.clone())),
                )
                .collect(),
        );
        let tool = metric_tool(
            metric.clone(),
            examples,
            counters.clone(),
            started,
            run.progress.clone(),
        );
        session
            .register_rust_tool(METRIC_TOOL, "the Rust metric", tool)
            .await?;
    }

    let input_names: Vec<Value> = run.trainset[0]
        .input
        .to_inputs()
        .keys()
        .map(|k| Value::from(k.as_str()))
        .collect();
    let args = vec![
        Value::from(optimizer),
        Value::Map(init),
        Value::Map(plan.compile),
        rows(run.trainset),
        run.valset.map_or(Value::Null, rows),
        Value::List(input_names),
    ];
    let result = host
        .call_method_with(
            "compile",
            args,
            Map::new(),
            &CallOptions::default().without_timeout(),
        )
        .await?;
    drop(session);
    let Value::Map(mut result) = result.value else {
        return Err(compile_error(optimizer, "the worker returned no state"));
    };
    let Some(Value::String(state)) = result.shift_remove("state") else {
        return Err(compile_error(optimizer, "the worker returned no state"));
    };
    tuned_copy(program, optimizer, &state)
}

/// `program` with the state DSPy's optimiser left in its student.
fn tuned_copy<P: Module>(program: &P, optimizer: &str, state: &str) -> Result<P> {
    let serde_json::Value::Object(states) = serde_json::from_str(state)
        .map_err(|e| compile_error(optimizer, format!("the tuned state is not JSON: {e}")))?
    else {
        return Err(compile_error(optimizer, "the tuned state is not an object"));
    };
    // `program` is the caller's: its predictors' calls go to the pool, and so do the copy's.
    with_states(program, states).map_err(|e| compile_error(optimizer, crate::error_chain(&e)))
}

type ToolResult = std::result::Result<Value, ToolError>;

/// Examples with the name errors give them (`trainset example #3`).
type Named<I, O> = Vec<(String, Example<I, O>)>;

fn forward_tool<P: Module>(
    program: P,
    host: Instance,
    counters: Arc<Mutex<CompileProgress>>,
) -> impl Fn(Map) -> futures_util::future::BoxFuture<'static, ToolResult> + Send + Sync + 'static {
    move |mut args: Map| {
        let (program, host, counters) = (program.clone(), host.clone(), counters.clone());
        async move {
            let Some(Value::String(token)) = args.shift_remove("token") else {
                return Err(ToolError::invalid_arguments(
                    "a forward call without its token",
                ));
            };
            let Some(Value::Map(inputs)) = args.shift_remove("inputs") else {
                return Err(ToolError::invalid_arguments(
                    "a forward call without inputs",
                ));
            };
            let input = P::Input::from_inputs(inputs).map_err(|e| {
                ToolError::invalid_arguments(format!(
                    "the example's inputs do not fit {}: {e}",
                    std::any::type_name::<P::Input>()
                ))
            })?;
            counters.lock().expect("progress lock").forwards += 1;
            let copy = program.__map("", &mut |path, p| p.traced(&host, &token, path));
            let output = AssertUnwindSafe(copy.forward(input))
                .catch_unwind()
                .await
                .map_err(|panic| {
                    format!("the program's forward panicked: {}", panic_message(&panic))
                })?
                .map_err(|e| crate::error_chain(&e))?;
            Ok(Value::Map(output.to_outputs()))
        }
        .boxed()
    }
}

fn trial_tool(
    counters: Arc<Mutex<CompileProgress>>,
    started: Instant,
    report: OnProgress,
) -> impl Fn(Map) -> futures_util::future::BoxFuture<'static, ToolResult> + Send + Sync + 'static {
    move |args: Map| {
        let snapshot = {
            let mut c = counters.lock().expect("progress lock");
            c.kind = ProgressKind::Trial;
            c.trials += 1;
            c.trial_score = args.get("score").and_then(Value::as_f64);
            if let Some(score) = c.trial_score {
                c.best_trial_score = Some(c.best_trial_score.map_or(score, |b| b.max(score)));
            }
            c.elapsed = started.elapsed();
            c.clone()
        };
        report(&snapshot);
        futures_util::future::ready(Ok(Value::Null)).boxed()
    }
}

fn metric_tool<I: SignatureInput, O: SignatureOutput>(
    metric: Arc<dyn Metric<I, O>>,
    examples: Arc<Named<I, O>>,
    counters: Arc<Mutex<CompileProgress>>,
    started: Instant,
    progress: Option<OnProgress>,
) -> impl Fn(Map) -> futures_util::future::BoxFuture<'static, ToolResult> + Send + Sync + 'static {
    move |mut args: Map| {
        let (metric, examples, counters, progress) = (
            metric.clone(),
            examples.clone(),
            counters.clone(),
            progress.clone(),
        );
        async move {
            let answer = |key: &str, value: Value| {
                let mut map = Map::new();
                map.insert(key.into(), value);
                Ok(Value::Map(map))
            };
            let (Some(Value::Map(example)), Some(Value::Map(prediction))) = (
                args.shift_remove("example"),
                args.shift_remove("prediction"),
            ) else {
                return Err(ToolError::invalid_arguments(
                    "a metric call without its example and prediction",
                ));
            };
            let example = match (I::from_inputs(example.clone()), O::from_outputs(example)) {
                (Ok(input), Ok(output)) => Example::new(input, output),
                (Err(e), _) | (_, Err(e)) => {
                    return answer(
                        "metric_error",
                        Value::from(format!("an example does not fit its Rust types: {e}")),
                    );
                }
            };
            let output = match O::from_outputs(prediction) {
                Ok(output) => output,
                Err(e) => {
                    return answer(
                        "output_error",
                        Value::from(format!("the prediction does not fit its Rust type: {e}")),
                    );
                }
            };
            match checked_score(metric.as_ref(), &example, &output).await {
                Ok(score) => {
                    let snapshot = {
                        let mut c = counters.lock().expect("progress lock");
                        c.kind = ProgressKind::Scored;
                        c.metric_calls += 1;
                        c.last_score = score;
                        c.best_score = c.best_score.max(score);
                        c.elapsed = started.elapsed();
                        c.clone()
                    };
                    if let Some(report) = &progress {
                        report(&snapshot);
                    }
                    answer("score", Value::Float(score))
                }
                Err(message) => {
                    // Named by its place in the data (looked up only now: a linear search).
                    let name = examples.iter().find(|(_, e)| *e == example).map_or_else(
                        || format!("the example {:?}", example.input),
                        |(n, _)| n.clone(),
                    );
                    answer(
                        "metric_error",
                        Value::from(format!("the metric failed on {name}: {message}")),
                    )
                }
            }
        }
        .boxed()
    }
}
