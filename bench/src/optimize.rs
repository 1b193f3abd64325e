//! The optimize group: the same BootstrapFewShot compilation of a two-step program (a Predict,
//! then a ChainOfThought) in pure Python DSPy and through dspex, on the same 20 ms LM, in
//! alternating rounds; `optimize.ratio` is the median of the rounds' ratios (dspex / Python).

use std::time::Instant;

use dspex::__private::Map;
use dspex::Value;
use dspex::prelude::*;
use dspex::snakepit_grpc_bridge::environment::PythonEnvironment;

use crate::{Summary, median_and_spread, python_baseline, start};

/// Rewrite the question as a search query.
#[dspy_signature]
pub(crate) struct Rewrite {
    #[input]
    pub question: String,
    #[output]
    pub query: String,
}

/// Answer the question using the query.
#[dspy_signature]
pub(crate) struct Answer {
    #[input]
    pub question: String,
    #[input]
    pub query: String,
    #[output]
    pub answer: String,
}

#[dspy_module]
pub(crate) struct Rag {
    rewrite: Predict<Rewrite>,
    answer: ChainOfThought<Answer>,
}

impl Module for Rag {
    type Input = RewriteInput;
    type Output = AnswerOutput;

    async fn forward(&self, input: RewriteInput) -> dspex::Result<AnswerOutput> {
        let query = self.rewrite.call(input.clone()).await?.query;
        self.answer
            .forward(AnswerInput {
                question: input.question,
                query,
            })
            .await
    }
}

/// Examples bootstrapped per compilation (each: 2 LM calls of 20 ms).
const EXAMPLES: usize = 20;
const ROUNDS: usize = 3;

fn lm() -> Lm {
    let mut answer = Map::new();
    for (k, v) in [("query", "q"), ("reasoning", "r"), ("answer", "a")] {
        answer.insert(k.into(), Value::from(v));
    }
    let mut kwargs = Map::new();
    kwargs.insert("answer".into(), Value::Map(answer));
    kwargs.insert("delay_ms".into(), Value::Float(20.0));
    Lm::custom("dspex_bench_lm.SleepyLM", kwargs)
}

pub(crate) async fn optimize(environment: &PythonEnvironment, summary: &mut Summary) {
    let dspex = start(2, lm(), 64).await;
    let rag = Rag::new(&dspex);
    let trainset: Vec<Example<RewriteInput, AnswerOutput>> = (0..EXAMPLES)
        .map(|i| {
            Example::new(
                RewriteInput {
                    question: format!("q{i}"),
                },
                AnswerOutput { answer: "a".into() },
            )
        })
        .collect();
    let metric = |ex: &Example<RewriteInput, AnswerOutput>, out: &AnswerOutput| {
        ex.output.answer == out.answer
    };
    let optimizer = BootstrapFewShot::new(metric)
        .max_bootstrapped_demos(EXAMPLES as u32)
        .max_labeled_demos(0);
    let (mut python, mut ours, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let baseline = python_baseline(environment, &["optimize", &EXAMPLES.to_string()]);
        let python_ms = baseline["wall_ms"].as_f64().expect("wall_ms");
        let started = Instant::now();
        let compiled = optimizer.compile(&rag, &trainset).await.expect("compiles");
        let dspex_ms = started.elapsed().as_secs_f64() * 1e3;
        assert_eq!(compiled.predictors()[0].1.demos().len(), EXAMPLES);
        python.push(python_ms);
        ours.push(dspex_ms);
        ratios.push(dspex_ms / python_ms);
    }
    summary.set("optimize.examples", EXAMPLES as f64);
    summary.set("optimize.ideal_ms", EXAMPLES as f64 * 2.0 * 20.0);
    summary.set("optimize.python_ms", median_and_spread(&mut python).0);
    summary.set("optimize.dspex_ms", median_and_spread(&mut ours).0);
    summary.set("optimize.ratio", median_and_spread(&mut ratios).0);
    dspex.shutdown().await.expect("shutdown");
}
