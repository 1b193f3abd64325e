//! Token usage (and cost) of programs: per call, per `forward`, per batch or evaluation.
//!
//! Every predictor call records its usage in the enclosing [`measured`] scope, if any; scopes
//! nest (an inner scope's total also counts in the outer one). A scope covers the futures it
//! awaits, not tasks they spawn.
//!
//! ```no_run
//! # use dspex::prelude::*;
//! # #[dspy_signature] pub struct QA { #[input] pub question: String, #[output] pub answer: String }
//! # async fn demo(dspex: &Dspex) -> dspex::Result<()> {
//! let qa = Predict::<QA>::new(dspex);
//! let inputs = vec![QAInput { question: "2 + 2?".into() }; 8];
//! let (outputs, usage) = dspex::usage::measured(qa.batch(inputs)).await;
//! println!("{} tokens in {} LM calls, ${:.4}", usage.total_tokens, usage.lm_calls, usage.cost);
//! # Ok(()) }
//! ```

use std::cell::Cell;
use std::future::Future;

use snakepit_grpc_bridge::api::dspy::Usage;

tokio::task_local! {
    static TALLY: Cell<Usage>;
}

/// Adds `usage` to the enclosing scope's total, if there is a scope.
pub(crate) fn record(usage: Usage) {
    let _ = TALLY.try_with(|tally| tally.set(tally.get() + usage));
}

/// Runs `future` and returns its output with the usage of every predictor call it made.
pub async fn measured<F: Future>(future: F) -> (F::Output, Usage) {
    // On the heap: programs' futures are large, and scopes nest.
    let scoped = Box::pin(TALLY.scope(Cell::new(Usage::default()), async {
        let output = future.await;
        (output, TALLY.with(Cell::get))
    }));
    let (output, usage) = scoped.await;
    record(usage);
    (output, usage)
}
