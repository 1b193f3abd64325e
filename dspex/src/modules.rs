//! Typed DSPy modules: [`Predict`], [`ChainOfThought`] and their results.

use std::marker::PhantomData;

use snakepit_grpc_bridge::api::dspy::{
    CallOptions, FieldChunk, Lm, Prediction, PredictionStream, StreamItem,
};

use crate::dspex::Dspex;
use crate::error::{Error, Result};
use crate::predictor::{Predictor, PredictorKind};
use crate::program::{Module, Program};
use crate::signature::{Signature, SignatureInput, SignatureOutput};

/// A ChainOfThought result: the reasoning, and the typed outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Reasoned<T> {
    /// The LM's reasoning before its answer.
    pub reasoning: String,
    /// The signature's outputs.
    pub output: T,
}

pub(crate) fn decode<S: Signature>(prediction: Prediction) -> Result<S::Output> {
    S::Output::from_outputs(prediction.outputs).map_err(|source| Error::Decode {
        signature: S::spec().name.clone(),
        source,
    })
}

pub(crate) fn decode_reasoned<S: Signature>(
    mut prediction: Prediction,
) -> Result<Reasoned<S::Output>> {
    let reasoning = match prediction.outputs.shift_remove("reasoning") {
        Some(snakepit_grpc_bridge::Value::String(s)) => s,
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    Ok(Reasoned {
        reasoning,
        output: decode::<S>(prediction)?,
    })
}

/// A typed output with the call's token usage (and cost) and, when asked for with
/// [`CallOptions::with_history`](crate::CallOptions::with_history), its LM history.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Detailed<T> {
    /// The typed output.
    pub output: T,
    /// Tokens and cost of the call's LM requests.
    pub usage: crate::Usage,
    /// The prompts and completions, when asked for.
    pub history: Vec<crate::HistoryEntry>,
}

/// The prediction's output, decoded by `decode`, with its usage and history.
fn detailed<T>(
    mut prediction: Prediction,
    decode: impl FnOnce(Prediction) -> Result<T>,
) -> Result<Detailed<T>> {
    let (usage, history) = (prediction.usage, std::mem::take(&mut prediction.history));
    Ok(Detailed {
        output: decode(prediction)?,
        usage,
        history,
    })
}

/// `dspy.Predict` of signature `S`: a program of one predictor. Its calls go to any worker;
/// once tuned (by an optimiser, or loaded from a file), to a module with its demos and
/// instructions, which each worker builds once. Cheap to clone.
///
/// ```no_run
/// # use dspex::prelude::*;
/// # #[dspy_signature] struct QA { #[input] question: String, #[output] answer: String }
/// # async fn demo(dspex: &Dspex) -> dspex::Result<()> {
/// let qa = Predict::<QA>::new(dspex);
/// let out = qa.call(QAInput { question: "Capital of France?".into() }).await?;
/// println!("{}", out.answer);
/// # Ok(()) }
/// ```
pub struct Predict<S: Signature> {
    predictor: Predictor,
    _signature: PhantomData<fn() -> S>,
}

/// `dspy.ChainOfThought` of signature `S`: the LM reasons before it answers. As a
/// [`Module`], its output is the signature's; [`call`](ChainOfThought::call) also gives the
/// reasoning.
pub struct ChainOfThought<S: Signature> {
    predictor: Predictor,
    _signature: PhantomData<fn() -> S>,
}

macro_rules! module_common {
    ($name:ident, $kind:expr) => {
        impl<S: Signature> Clone for $name<S> {
            fn clone(&self) -> Self {
                $name {
                    predictor: self.predictor.clone(),
                    _signature: PhantomData,
                }
            }
        }

        impl<S: Signature> std::fmt::Debug for $name<S> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("signature", &S::spec().name)
                    .field("demos", &self.predictor.demos().len())
                    .finish()
            }
        }

        impl<S: Signature> $name<S> {
            /// The module on `dspex`, with the pool's LM.
            pub fn new(dspex: &Dspex) -> Self {
                Self::from_predictor(Predictor::new(dspex, $kind, S::spec(), None))
            }

            /// The module with its own LM.
            pub fn with_lm(dspex: &Dspex, lm: Lm) -> Self {
                Self::from_predictor(Predictor::new(dspex, $kind, S::spec(), Some(lm)))
            }

            fn from_predictor(predictor: Predictor) -> Self {
                $name {
                    predictor,
                    _signature: PhantomData,
                }
            }

            /// The predictor: its state (demos, instructions), and untyped calls with the whole
            /// [`Prediction`] (usage, history).
            pub fn predictor(&self) -> &Predictor {
                &self.predictor
            }
        }

        impl<S: Signature> Program for $name<S> {
            fn __build(dspex: &Dspex) -> Self {
                Self::new(dspex)
            }

            fn __visit<'a>(&'a self, path: &str, visit: &mut dyn FnMut(&str, &'a Predictor)) {
                visit(path, &self.predictor);
            }

            fn __map(
                &self,
                path: &str,
                map: &mut dyn FnMut(&str, &Predictor) -> Predictor,
            ) -> Self {
                Self::from_predictor(map(path, &self.predictor))
            }
        }
    };
}

module_common!(Predict, PredictorKind::Predict);
module_common!(ChainOfThought, PredictorKind::ChainOfThought);

impl<S: Signature> Predict<S> {
    /// Runs the module on one input.
    pub async fn call(&self, input: S::Input) -> Result<S::Output> {
        self.call_with(input, &CallOptions::default()).await
    }

    /// Runs the module with options (an LM for this call, history).
    pub async fn call_with(&self, input: S::Input, options: &CallOptions) -> Result<S::Output> {
        decode::<S>(self.predictor.run(input.to_inputs(), options).await?)
    }

    /// Runs the module and returns, beside the output, the call's usage and (with
    /// `options.with_history()`) its LM history.
    pub async fn call_detailed(
        &self,
        input: S::Input,
        options: &CallOptions,
    ) -> Result<Detailed<S::Output>> {
        detailed(
            self.predictor.run(input.to_inputs(), options).await?,
            decode::<S>,
        )
    }
}

impl<S: Signature> Predict<S> {
    /// Runs the module on one input, streamed: each output field in pieces as the LM writes it
    /// (DSPy's `streamify`), then the typed output. Dropping the stream cancels the call in its
    /// worker.
    ///
    /// ```no_run
    /// # use dspex::prelude::*;
    /// /// Answer the question.
    /// #[dspy_signature]
    /// pub struct Qa {
    ///     /// The question.
    ///     #[input]
    ///     pub question: String,
    ///     /// The answer.
    ///     #[output]
    ///     pub answer: String,
    /// }
    /// # async fn demo(dspex: &Dspex) -> dspex::Result<()> {
    /// use dspex::Streamed;
    /// use futures_util::StreamExt;
    /// let mut stream = Predict::<Qa>::new(dspex)
    ///     .stream(QaInput { question: "Why is the sky blue?".into() })
    ///     .await?;
    /// while let Some(item) = stream.next().await {
    ///     match item? {
    ///         Streamed::Chunk(chunk) => print!("{}", chunk.text),
    ///         Streamed::Output(out) => println!("\n{}", out.answer),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn stream(&self, input: S::Input) -> Result<TypedStream<S::Output>> {
        self.stream_with(input, &CallOptions::default()).await
    }

    /// [`stream`](Predict::stream) with options (an LM, a deadline for the whole stream).
    pub async fn stream_with(
        &self,
        input: S::Input,
        options: &CallOptions,
    ) -> Result<TypedStream<S::Output>> {
        let stream = self.predictor.stream(input.to_inputs(), options).await?;
        Ok(typed(stream, decode::<S>))
    }
}

impl<S: Signature> ChainOfThought<S> {
    /// Runs the module on one input, streamed: the reasoning and each output field in pieces as
    /// the LM writes them, then the reasoning and typed output.
    pub async fn stream(&self, input: S::Input) -> Result<TypedStream<Reasoned<S::Output>>> {
        self.stream_with(input, &CallOptions::default()).await
    }

    /// [`stream`](ChainOfThought::stream) with options.
    pub async fn stream_with(
        &self,
        input: S::Input,
        options: &CallOptions,
    ) -> Result<TypedStream<Reasoned<S::Output>>> {
        let stream = self.predictor.stream(input.to_inputs(), options).await?;
        Ok(typed(stream, decode_reasoned::<S>))
    }
}

/// One item of a typed stream: a piece of an output field, a status message of DSPy's, or, last,
/// the typed output.
#[derive(Debug)]
#[non_exhaustive]
pub enum Streamed<O> {
    /// A piece of an output field (or of the reasoning), as the LM wrote it.
    Chunk(FieldChunk),
    /// One of DSPy's status messages.
    Status(String),
    /// The typed output, last.
    Output(O),
}

/// The items of a typed streamed call, ending after [`Streamed::Output`] or with one error.
pub type TypedStream<O> = futures_util::stream::BoxStream<'static, Result<Streamed<O>>>;

fn typed<O: Send + 'static>(
    stream: PredictionStream,
    decode: fn(Prediction) -> Result<O>,
) -> TypedStream<O> {
    use futures_util::StreamExt;
    stream
        .map(move |item| match item? {
            StreamItem::Chunk(chunk) => Ok(Streamed::Chunk(chunk)),
            StreamItem::Status(status) => Ok(Streamed::Status(status)),
            StreamItem::Done(prediction) => decode(prediction).map(Streamed::Output),
            other => Err(crate::Error::Bridge(
                snakepit_grpc_bridge::BridgeError::Protocol(format!(
                    "an unknown stream item: {other:?}"
                )),
            )),
        })
        .boxed()
}

impl<S: Signature> ChainOfThought<S> {
    /// Runs the module on one input: the reasoning and the outputs.
    pub async fn call(&self, input: S::Input) -> Result<Reasoned<S::Output>> {
        self.call_with(input, &CallOptions::default()).await
    }

    /// Runs the module with options (an LM for this call, history).
    pub async fn call_with(
        &self,
        input: S::Input,
        options: &CallOptions,
    ) -> Result<Reasoned<S::Output>> {
        decode_reasoned::<S>(self.predictor.run(input.to_inputs(), options).await?)
    }

    /// Runs the module and returns, beside the reasoning and output, the call's usage and (with
    /// `options.with_history()`) its LM history.
    pub async fn call_detailed(
        &self,
        input: S::Input,
        options: &CallOptions,
    ) -> Result<Detailed<Reasoned<S::Output>>> {
        detailed(
            self.predictor.run(input.to_inputs(), options).await?,
            decode_reasoned::<S>,
        )
    }
}

impl<S: Signature> Module for Predict<S> {
    type Input = S::Input;
    type Output = S::Output;

    async fn forward(&self, input: S::Input) -> Result<S::Output> {
        self.call(input).await
    }
}

impl<S: Signature> Module for ChainOfThought<S> {
    type Input = S::Input;
    type Output = S::Output;

    async fn forward(&self, input: S::Input) -> Result<S::Output> {
        Ok(self.call(input).await?.output)
    }
}
