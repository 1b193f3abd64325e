//! [`Evaluate`]: a program measured on a dataset with a metric, in parallel.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::StreamExt;

use crate::error::{Error, Result};
use crate::example::Example;
use crate::metric::{Metric, checked_score};
use crate::program::Module;

type ProgressFn<'a> = Box<dyn Fn(&EvaluateProgress) + Send + Sync + 'a>;

/// Progress of an evaluation, after each example.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EvaluateProgress {
    /// Examples done (scored or failed).
    pub done: usize,
    /// Examples in all.
    pub total: usize,
    /// Examples whose program call failed.
    pub failed: usize,
}

/// What happened to one example.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome<O> {
    /// The program answered and the metric scored it.
    Scored {
        /// The program's output.
        output: O,
        /// The metric's score.
        score: f64,
    },
    /// The program failed on it (an LM error, an output that does not fit its type, ...).
    Failed(Error),
}

/// One example's result.
#[derive(Debug)]
#[non_exhaustive]
pub struct ExampleResult<O> {
    /// Its index in the dataset.
    pub index: usize,
    /// Its outcome.
    pub outcome: Outcome<O>,
    /// The tokens (and cost) the program used on it.
    pub usage: crate::Usage,
}

impl<O> ExampleResult<O> {
    /// The score, if the program answered (a failure is not a score; it counts as 0 in
    /// [`EvaluationReport::score`]).
    pub fn score(&self) -> Option<f64> {
        match &self.outcome {
            Outcome::Scored { score, .. } => Some(*score),
            Outcome::Failed(_) => None,
        }
    }
}

/// The result of an evaluation.
#[derive(Debug)]
#[non_exhaustive]
pub struct EvaluationReport<O> {
    /// The mean score over every example, failures counting 0 (as DSPy's `Evaluate` does, but
    /// as a mean, not a percentage).
    pub score: f64,
    /// The mean score over the examples the program answered.
    pub answered_score: f64,
    /// How many examples the program failed on.
    pub failed: usize,
    /// Each example's result, in dataset order.
    pub results: Vec<ExampleResult<O>>,
    /// The tokens (and cost) of the whole evaluation (the metric's own LM calls, if it makes
    /// any through dspex, included).
    pub usage: crate::Usage,
}

/// Runs a program on every example of a dataset, at most `concurrency` at once, and scores each
/// output with a metric. Failures of the program are counted apart from low scores; a failure
/// of the metric itself (an error, a panic, NaN) ends the evaluation with an error naming the
/// example.
///
/// ```no_run
/// # use dspex::prelude::*;
/// # #[dspy_signature] pub struct QA { #[input] pub question: String, #[output] pub answer: String }
/// # async fn demo(dspex: &Dspex, devset: Vec<Example<QAInput, QAOutput>>) -> dspex::Result<()> {
/// let qa = Predict::<QA>::new(dspex);
/// let metric = |ex: &Example<QAInput, QAOutput>, out: &QAOutput| ex.output.answer == out.answer;
/// let report = Evaluate::new(&devset, metric).concurrency(8).run(&qa).await?;
/// println!("{:.2} ({} failed)", report.score, report.failed);
/// # Ok(()) }
/// ```
pub struct Evaluate<'a, I, O, M> {
    devset: &'a [Example<I, O>],
    metric: M,
    concurrency: usize,
    progress: Option<ProgressFn<'a>>,
}

impl<'a, I, O, M> Evaluate<'a, I, O, M>
where
    I: Clone + Send + Sync,
    O: Send + Sync,
    M: Metric<I, O>,
{
    /// An evaluation of `devset` with `metric`, 16 examples at a time.
    pub fn new(devset: &'a [Example<I, O>], metric: M) -> Self {
        Evaluate {
            devset,
            metric,
            concurrency: 16,
            progress: None,
        }
    }

    /// At most `n` examples at once (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Calls `report` after each example.
    pub fn on_progress(mut self, report: impl Fn(&EvaluateProgress) + Send + Sync + 'a) -> Self {
        self.progress = Some(Box::new(report));
        self
    }

    /// Runs `program` on the dataset.
    pub async fn run<P>(&self, program: &P) -> Result<EvaluationReport<O>>
    where
        P: Module<Input = I, Output = O>,
    {
        let total = self.devset.len();
        let (done, failed) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let (done, failed) = (&done, &failed);
        let results: Vec<Result<ExampleResult<O>>> =
            futures_util::stream::iter(self.devset.iter().enumerate())
                .map(|(index, example)| async move {
                    let (result, usage) =
                        crate::usage::measured(program.forward(example.input.clone())).await;
                    let outcome = match result {
                        Ok(output) => {
                            let score = checked_score(&self.metric, example, &output)
                                .await
                                .map_err(|message| Error::Metric {
                                    example: format!("example #{index}"),
                                    message,
                                })?;
                            Outcome::Scored { output, score }
                        }
                        Err(error) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            Outcome::Failed(error)
                        }
                    };
                    let done = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if let Some(report) = &self.progress {
                        report(&EvaluateProgress {
                            done,
                            total,
                            failed: failed.load(Ordering::Relaxed),
                        });
                    }
                    Ok(ExampleResult {
                        index,
                        outcome,
                        usage,
                    })
                })
                .buffered(self.concurrency)
                .collect()
                .await;
        let results = results.into_iter().collect::<Result<Vec<_>>>()?;
        let scores: Vec<f64> = results.iter().filter_map(ExampleResult::score).collect();
        let sum: f64 = scores.iter().sum();
        let mean = |n: usize| if n == 0 { 0.0 } else { sum / n as f64 };
        let usage = results.iter().map(|r| r.usage).sum();
        Ok(EvaluationReport {
            usage,
            score: mean(results.len()),
            answered_score: mean(scores.len()),
            failed: results.len() - scores.len(),
            results,
        })
    }
}
