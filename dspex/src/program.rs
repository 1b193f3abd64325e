//! [`Program`] (a tree of named predictors, saved and loaded in DSPy's format) and [`Module`]
//! (a program with typed input, output and `forward`).

use std::future::Future;
use std::path::Path;

use futures_util::StreamExt;

use crate::dspex::Dspex;
use crate::error::Result;
use crate::predictor::Predictor;
use crate::signature::{SignatureInput, SignatureOutput};
use crate::state::{PredictorState, StateError, program_json, read_program, write_program};

/// The batch size [`Module::batch`] runs at once.
pub const DEFAULT_BATCH_CONCURRENCY: usize = 16;

/// `path.field`, or `field` at the top.
pub fn join_path(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// `program` with each predictor's state taken from `states` (DSPy name → DSPy's JSON of the
/// predictor), checked against the predictor; a name missing from `states` is a malformed state.
pub(crate) fn with_states<P: Program>(
    program: &P,
    mut states: serde_json::Map<String, serde_json::Value>,
) -> std::result::Result<P, StateError> {
    let mut failed: Option<StateError> = None;
    let tuned = program.__map("", &mut |path, predictor| {
        let name = predictor.kind().dspy_name(path);
        let json = states.remove(&name).unwrap_or_default();
        match PredictorState::from_json(json, &name, predictor.kind(), predictor.signature()) {
            Ok(state) => predictor.with_state(state),
            Err(e) => {
                failed.get_or_insert(e);
                predictor.clone()
            }
        }
    });
    match failed {
        Some(error) => Err(error),
        None => Ok(tuned),
    }
}

/// A DSPy program: named predictors, possibly inside nested programs. Implemented by
/// [`Predict`](crate::Predict), [`ChainOfThought`](crate::ChainOfThought) and every
/// `#[dspy_module]` struct; you never implement it by hand.
///
/// Predictors are named as DSPy names them in the equivalent Python program: a field `rewrite`
/// holding a `Predict` is `rewrite`, a field `answer` holding a `ChainOfThought` is
/// `answer.predict`, a nested module's predictors are prefixed with its field name. Those are
/// the keys of a saved file, so a program saved here loads into the same program written in
/// Python, and the reverse.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a DSPy program",
    note = "the fields of a #[dspy_module] are programs: Predict<S>, ChainOfThought<S>, or other #[dspy_module] structs"
)]
pub trait Program: Clone + std::fmt::Debug + Send + Sync + Sized + 'static {
    #[doc(hidden)]
    fn __build(dspex: &Dspex) -> Self;

    /// Calls `visit` with each predictor and the Rust path of the module holding it.
    #[doc(hidden)]
    fn __visit<'a>(&'a self, path: &str, visit: &mut dyn FnMut(&str, &'a Predictor));

    /// The same program with each predictor replaced by `map(path, predictor)`.
    #[doc(hidden)]
    fn __map(&self, path: &str, map: &mut dyn FnMut(&str, &Predictor) -> Predictor) -> Self;

    /// The predictors by DSPy name, in field order.
    fn predictors(&self) -> Vec<(String, &Predictor)> {
        let mut all = Vec::new();
        self.__visit("", &mut |path, predictor| {
            all.push((predictor.kind().dspy_name(path), predictor));
        });
        all
    }

    /// Writes the program's state (every predictor's demos and instructions) to `path` in
    /// DSPy's JSON format: `program.load("path")` in Python reads it.
    fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let states = self
            .predictors()
            .into_iter()
            .map(|(name, predictor)| (name, predictor.state().to_json()))
            .collect();
        Ok(write_program(path.as_ref(), &program_json(states))?)
    }

    /// This program with the state saved in `path` (by Rust or by Python DSPy), checked
    /// against its predictors: a file for another program is refused with what does not fit.
    fn with_saved_state(&self, path: impl AsRef<Path>) -> Result<Self> {
        let names: Vec<String> = self.predictors().into_iter().map(|(n, _)| n).collect();
        let file = read_program(path.as_ref(), &names)?;
        Ok(with_states(self, file)?)
    }

    /// A fresh program on `dspex` with the state saved in `path`; see
    /// [`with_saved_state`](Program::with_saved_state).
    fn load(dspex: &Dspex, path: impl AsRef<Path>) -> Result<Self> {
        Self::__build(dspex).with_saved_state(path)
    }
}

/// A program with typed input and output, and control flow in Rust.
///
/// `#[dspy_module]` makes a struct a [`Program`]; you write `forward`:
///
/// ```no_run
/// use dspex::prelude::*;
///
/// #[dspy_signature]
/// pub struct Rewrite { #[input] pub question: String, #[output] pub query: String }
/// #[dspy_signature]
/// pub struct Answer { #[input] pub question: String, #[input] pub query: String, #[output] pub answer: String }
///
/// #[dspy_module]
/// pub struct Rag {
///     rewrite: Predict<Rewrite>,
///     answer: ChainOfThought<Answer>,
/// }
///
/// impl Module for Rag {
///     type Input = RewriteInput;
///     type Output = AnswerOutput;
///
///     async fn forward(&self, input: RewriteInput) -> dspex::Result<AnswerOutput> {
///         let query = self.rewrite.call(input.clone()).await?.query;
///         self.answer.forward(AnswerInput { question: input.question, query }).await
///     }
/// }
///
/// # async fn demo(dspex: &Dspex) -> dspex::Result<()> {
/// let rag = Rag::new(dspex);
/// let out = rag.forward(RewriteInput { question: "Who wrote Dune?".into() }).await?;
/// # Ok(()) }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `forward`: it is not a `dspex::Module`",
    note = "write `impl Module for {Self} {{ type Input = ...; type Output = ...; async fn forward(...) }}`"
)]
pub trait Module: Program {
    /// What the program takes: a signature's input struct, or any such struct.
    type Input: SignatureInput;
    /// What it gives.
    type Output: SignatureOutput;

    /// Runs the program on one input.
    fn forward(&self, input: Self::Input) -> impl Future<Output = Result<Self::Output>> + Send;

    /// Runs the program on many inputs, [`DEFAULT_BATCH_CONCURRENCY`] at a time; results in
    /// input order, each with its own error.
    fn batch(
        &self,
        inputs: Vec<Self::Input>,
    ) -> impl Future<Output = Vec<Result<Self::Output>>> + Send {
        self.batch_with(inputs, DEFAULT_BATCH_CONCURRENCY)
    }

    /// [`batch`](Module::batch) with at most `concurrency` inputs at once (at least one).
    fn batch_with(
        &self,
        inputs: Vec<Self::Input>,
        concurrency: usize,
    ) -> impl Future<Output = Vec<Result<Self::Output>>> + Send {
        async move {
            futures_util::stream::iter(inputs)
                .map(|input| self.forward(input))
                .buffered(concurrency.max(1))
                .collect()
                .await
        }
    }

    /// [`batch_with`](Module::batch_with), calling `report` after each input (in the order they
    /// finish): done, failed, total.
    fn batch_reporting(
        &self,
        inputs: Vec<Self::Input>,
        concurrency: usize,
        report: impl Fn(&crate::progress::BatchProgress) + Send + Sync,
    ) -> impl Future<Output = Vec<Result<Self::Output>>> + Send {
        async move {
            let total = inputs.len();
            let done = std::sync::atomic::AtomicUsize::new(0);
            let failed = std::sync::atomic::AtomicUsize::new(0);
            let (done, failed, report) = (&done, &failed, &report);
            futures_util::stream::iter(inputs)
                .map(|input| async move {
                    let result = self.forward(input).await;
                    if result.is_err() {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    let progress = crate::progress::BatchProgress {
                        done: done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
                        total,
                        failed: failed.load(std::sync::atomic::Ordering::Relaxed),
                    };
                    report(&progress);
                    result
                })
                .buffered(concurrency.max(1))
                .collect()
                .await
        }
    }
}
