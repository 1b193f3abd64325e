//! Optimisers: the pinned DSPy's own `LabeledFewShot`, `BootstrapFewShot`,
//! `BootstrapFewShotWithRandomSearch`, `COPRO`, `MIPROv2`, `GEPA` and `SIMBA`, tuning programs
//! whose `forward` and metric are Rust.
//!
//! Each optimiser is a builder: `new` with the metric (and the LM it needs, for GEPA), its main
//! parameters as methods, then `compile(&program, &trainset)` (or `compile_with_valset` where
//! DSPy takes a valset), which returns a tuned copy of the program. A compilation runs in one
//! worker session; the other workers keep serving calls.
//!
//! ```no_run
//! # use dspex::prelude::*;
//! # #[dspy_signature] pub struct QA { #[input] pub question: String, #[output] pub answer: String }
//! # async fn demo(dspex: &Dspex, trainset: Vec<Example<QAInput, QAOutput>>) -> dspex::Result<()> {
//! let metric = |ex: &Example<QAInput, QAOutput>, out: &QAOutput| ex.output.answer == out.answer;
//! let qa = Predict::<QA>::new(dspex);
//! let compiled = BootstrapFewShot::new(metric)
//!     .max_bootstrapped_demos(4)
//!     .on_progress(|p| eprintln!("{} scored, best {:.2}", p.metric_calls, p.best_score))
//!     .compile(&qa, &trainset)
//!     .await?;
//! compiled.save("qa.json")?;
//! # Ok(()) }
//! ```

mod optimizers;
mod run;

pub use optimizers::{
    Auto, BootstrapFewShot, BootstrapFewShotWithRandomSearch, COPRO, GEPA, LabeledFewShot, MIPROv2,
    NoMetric, SIMBA,
};
pub use run::{CompileProgress, ProgressKind};
