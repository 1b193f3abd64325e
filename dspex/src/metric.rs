//! Metrics: how well a program's output fits an example. Any Rust closure, sync or async,
//! returning `f64`, `f32` or `bool` (or a `Result` of one).
//!
//! ```
//! use dspex::metric::{Metric, from_async};
//! use dspex::prelude::*;
//!
//! #[dspy_signature]
//! pub struct QA { #[input] pub question: String, #[output] pub answer: String }
//!
//! // Sync: annotate the arguments (references) and return a number or a bool.
//! let exact = |ex: &Example<QAInput, QAOutput>, out: &QAOutput| ex.output.answer == out.answer;
//! // Async: `from_async`, with the arguments by value.
//! let judged = from_async(|ex: Example<QAInput, QAOutput>, out: QAOutput| async move {
//!     (ex.output.answer.len() as f64 - out.answer.len() as f64).abs() < 3.0
//! });
//! # fn takes<M: Metric<QAInput, QAOutput>>(_: M) {}
//! # takes(exact); takes(judged);
//! ```

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

use futures_util::FutureExt;

use crate::example::Example;

/// What a metric may return.
pub trait Score: Send {
    /// The score as a number; `Err` with a message for a metric that failed.
    fn into_score(self) -> Result<f64, String>;
}

impl Score for f64 {
    fn into_score(self) -> Result<f64, String> {
        Ok(self)
    }
}

impl Score for f32 {
    fn into_score(self) -> Result<f64, String> {
        Ok(self.into())
    }
}

impl Score for bool {
    fn into_score(self) -> Result<f64, String> {
        Ok(if self { 1.0 } else { 0.0 })
    }
}

impl<T: Score, E: std::fmt::Display + Send> Score for Result<T, E> {
    fn into_score(self) -> Result<f64, String> {
        self.map_err(|e| e.to_string())?.into_score()
    }
}

/// A boxed future of a score.
pub type ScoreFuture<'a> = Pin<Box<dyn Future<Output = Result<f64, String>> + Send + 'a>>;

/// A metric over examples with input `I` and output `O`. Implemented for closures
/// `Fn(&Example<I, O>, &O) -> impl Score`, and for async closures wrapped by [`from_async`].
pub trait Metric<I, O>: Send + Sync + 'static {
    /// Scores `output` against `example`.
    fn score<'a>(&'a self, example: &'a Example<I, O>, output: &'a O) -> ScoreFuture<'a>;
}

impl<I, O, F, R> Metric<I, O> for F
where
    I: Sync,
    O: Sync,
    F: Fn(&Example<I, O>, &O) -> R + Send + Sync + 'static,
    R: Score,
{
    fn score<'a>(&'a self, example: &'a Example<I, O>, output: &'a O) -> ScoreFuture<'a> {
        let score = self(example, output).into_score();
        Box::pin(std::future::ready(score))
    }
}

/// An async metric; see [`from_async`].
#[derive(Debug, Clone, Copy)]
pub struct AsyncMetric<F>(F);

/// Makes an async closure `Fn(Example<I, O>, O) -> impl Future<Output = impl Score>` a metric
/// (an LM judge, a lookup). It gets its arguments by value, so its future can outlive them.
pub fn from_async<F>(metric: F) -> AsyncMetric<F> {
    AsyncMetric(metric)
}

impl<I, O, F, Fut, R> Metric<I, O> for AsyncMetric<F>
where
    I: Clone + Sync,
    O: Clone + Sync,
    F: Fn(Example<I, O>, O) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: Score,
{
    fn score<'a>(&'a self, example: &'a Example<I, O>, output: &'a O) -> ScoreFuture<'a> {
        let future = (self.0)(example.clone(), output.clone());
        Box::pin(async move { future.await.into_score() })
    }
}

/// Runs `metric` once, as a checked score: a panic, an error or a non-finite number is an
/// `Err` with a message.
pub(crate) async fn checked_score<I, O, M: Metric<I, O> + ?Sized>(
    metric: &M,
    example: &Example<I, O>,
    output: &O,
) -> Result<f64, String> {
    let score = AssertUnwindSafe(async { metric.score(example, output).await })
        .catch_unwind()
        .await
        .map_err(|panic| format!("it panicked: {}", panic_message(&panic)))??;
    if score.is_finite() {
        Ok(score)
    } else {
        Err(format!("it returned {score}, not a finite number"))
    }
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
