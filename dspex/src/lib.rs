//! # dspex
//!
//! Typed DSPy signatures in Rust, run on real Python DSPy through a supervised pool of Python
//! worker processes. Annotate a struct, get compile-time checked, typed predictions.
//!
//! ```no_run
//! use dspex::prelude::*;
//!
//! /// Answer questions with short factoid answers.
//! #[dspy_signature]
//! pub struct QA {
//!     /// The question to answer.
//!     #[input]
//!     pub question: String,
//!     #[output(desc = "often between 1 and 5 words")]
//!     pub answer: String,
//!     #[output]
//!     pub confidence: f64,
//! }
//!
//! #[dspy_type]
//! pub enum Label { Positive, Negative, Neutral }
//!
//! # async fn demo() -> dspex::Result<()> {
//! let dspex = Dspex::builder()
//!     .lm(Lm::new("openai/gpt-4o-mini").api_key_env("OPENAI_API_KEY"))
//!     .workers(2)
//!     .start()
//!     .await?;
//! let out: QAOutput = QA::predict(&dspex, QAInput { question: "Capital of France?".into() }).await?;
//! let r: Reasoned<QAOutput> = QA::chain_of_thought(&dspex, QAInput { question: "Why?".into() }).await?;
//! let qa = Predict::<QA>::new(&dspex);   // a program of one predictor (see `Module`, `#[dspy_module]`)
//! let again = qa.call(QAInput { question: "Capital of Italy?".into() }).await?;
//! dspex.shutdown().await?;
//! # let _ = (out, r, again); Ok(()) }
//! ```
//!
//! ## Three layers
//! - `snakepit`: the process pool. Starts, supervises, restarts and cleans up OS worker
//!   processes; knows nothing of Python.
//! - [`snakepit_grpc_bridge`]: the platform. Starts Python workers (provisioning a managed
//!   virtual environment with pinned DSPy on first use), speaks gRPC to them, and offers
//!   sessions, tools, variables and the DSPy API.
//! - `dspex` (this crate): the typed surface. It only calls the bridge's public API.
//!
//! ## The macros
//! - [`#[dspy_signature]`](dspy_signature) on a struct with named fields: doc comments become the
//!   instructions and field descriptions; `#[input]` and `#[output]` (optionally
//!   `(desc = "...", prefix = "...")`) mark the fields. It generates `<Name>Input` and
//!   `<Name>Output` (Debug, Clone, PartialEq, serde), `impl Signature`, and the async functions
//!   `predict` and `chain_of_thought`.
//! - [`#[dspy_type]`](dspy_type) on a unit enum (a `Literal` of its variant names) or a struct with
//!   named fields (a nested object), usable in signatures and in each other to any depth. It
//!   derives Debug, Clone, PartialEq and serde; do not derive those again.
//! - [`#[dspy_module]`](dspy_module) on a struct whose fields are programs ([`Predict`],
//!   [`ChainOfThought`], other `#[dspy_module]`s): it becomes a [`Program`] with a generated
//!   `new`, and with `impl Module` (a typed `forward` in Rust) it can be evaluated
//!   ([`Evaluate`]), optimised by DSPy's own optimisers ([`optimize`]), saved and loaded in DSPy's
//!   format ([`Program::save`], [`Program::load`]). It derives `Clone` and `Debug`.
//! - [`defdspy!`] declares a typed wrapper around any Python class by dotted path.
//!
//! ### `defdspy!`
//! The Rust counterpart of Elixir DSPex's `defdsyp`: a typed wrapper around any Python class by
//! dotted path (DSPy's own modules or your own, importable in the workers). It reads like a
//! struct whose methods are declared, not defined:
//!
//! ```ignore
//! defdspy! {
//!     /// A counter kept in Python.
//!     #[python = "my_module.Counter"]
//!     pub struct Counter {
//!         fn new(start: i64, step: i64);   // the constructor's keyword arguments
//!         fn call(times: i64) -> i64;     // what runs it: `call` and `execute` (Python `__call__`)
//!         #[python = "read"]
//!         fn value() -> i64;              // any other method; Python name if it differs
//!         fn reset();                     // no return value
//!     }
//! }
//! let counter = Counter::create(&dspex, 10, 5).await?;   // a new session, the object in it
//! let n: i64 = counter.call(2).await?;
//! ```
//!
//! An argument whose Python name is not a Rust name carries it: `fn new(#[python = "M"] m: i64)`
//! passes `M=m` (an attribute that would do nothing, such as `#[python]` on `fn new` itself, is a
//! compile error).
//!
//! A wrapper may be generic over one signature, `pub struct Mcc<S> { ... }`: `create` then passes
//! `S::spec()` as the first constructor argument, an argument typed `S::Input` is spread into
//! keyword arguments, and a return type `S::Output` is decoded as the signature's outputs.
//! [`Predict`] and [`ChainOfThought`] have the same `call`.
//!
//! Field types: `String`, `bool`, `f32`, `f64`, `i8`–`i64`, `isize`, `u8`–`u32`, `Vec<T>`,
//! `Option<T>`, `HashMap<String, T>`, `BTreeMap<String, T>`, and `#[dspy_type]`s. Integers travel
//! as 64-bit signed integers, so `u64`, `usize`, `i128` and `u128` are compile errors that say so
//! (they cannot all round-trip exactly); use `i64` or `String`. Data-carrying enum variants are
//! not supported (a compile error); model them as a struct. Recursive types are not supported.
//!
//! Every mistake is a compile error pointing at the offending span: see `tests/ui/` in the
//! repository for each one with its message.

mod dspex;
mod error;
mod evaluate;
mod example;
mod modules;
mod object;
mod predictor;
mod program;
mod signature;
mod state;
mod types;

pub mod config;
pub mod data;
pub mod metric;
pub mod optimize;
pub mod progress;
pub mod react;
pub mod usage;

/// The platform layer underneath: tools, variables, the untyped DSPy API, the pool.
pub use snakepit_grpc_bridge;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use config::{Config, ConfigError};
pub use dspex::{Dspex, DspexBuilder};
pub use dspex_macros::{defdspy, dspy_module, dspy_signature, dspy_type};
pub use error::{DecodeError, Error, Result, error_chain};
pub use evaluate::{Evaluate, EvaluateProgress, EvaluationReport, ExampleResult, Outcome};
pub use example::Example;
pub use metric::Metric;
pub use modules::{ChainOfThought, Detailed, Predict, Reasoned, Streamed, TypedStream};
pub use object::ObjectModule;
pub use optimize::{
    BootstrapFewShot, BootstrapFewShotWithRandomSearch, COPRO, GEPA, LabeledFewShot, MIPROv2, SIMBA,
};
pub use predictor::{Predictor, PredictorKind};
pub use program::{DEFAULT_BATCH_CONCURRENCY, Module, Program};
pub use react::ReAct;
pub use signature::{Signature, SignatureInput, SignatureOutput};
pub use snakepit_grpc_bridge::api::dspy::FieldChunk;
pub use snakepit_grpc_bridge::api::dspy::{CallOptions, HistoryEntry, Lm, LmAdapter, Usage};
pub use snakepit_grpc_bridge::{BridgeError, Value};
pub use state::{Demo, FieldState, PredictorState, StateError};
pub use types::DspyType;

/// Everything a typical program needs.
pub mod prelude {
    pub use crate::{
        BootstrapFewShot, BootstrapFewShotWithRandomSearch, COPRO, ChainOfThought, Dspex, DspyType,
        Error, Evaluate, Example, GEPA, LabeledFewShot, Lm, MIPROv2, Metric, Module, Predict,
        Program, Reasoned, Result, SIMBA, Signature, defdspy, dspy_module, dspy_signature,
        dspy_type,
    };
}
