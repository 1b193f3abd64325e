//! Typed DSPy modules: [`Predict`], [`ChainOfThought`] and their results.

use std::marker::PhantomData;
use std::sync::Arc;

use snakepit_grpc_bridge::api::dspy::{CallOptions, Instance, Prediction};
use snakepit_grpc_bridge::api::sessions::Session;

use crate::dspex::Dspex;
use crate::error::{Error, Result};
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

/// One module instance living in a worker session, shared by clones.
#[derive(Debug)]
struct Module {
    // Declared first: the instance goes before its session.
    instance: Instance,
    session: Session,
}

/// `dspy.Predict` of signature `S`, living in a worker session (so it can later be compiled,
/// saved and loaded like any DSPy module).
///
/// ```no_run
/// # use dspex::prelude::*;
/// # #[dspy_signature] struct QA { #[input] question: String, #[output] answer: String }
/// # async fn demo(dspex: &Dspex) -> dspex::Result<()> {
/// let qa = Predict::<QA>::new(dspex).await?;
/// let out = qa.call(QAInput { question: "Capital of France?".into() }).await?;
/// println!("{}", out.answer);
/// # Ok(()) }
/// ```
pub struct Predict<S: Signature> {
    module: Arc<Module>,
    _signature: PhantomData<fn() -> S>,
}

/// `dspy.ChainOfThought` of signature `S`, living in a worker session.
pub struct ChainOfThought<S: Signature> {
    module: Arc<Module>,
    _signature: PhantomData<fn() -> S>,
}

macro_rules! module_common {
    ($name:ident, $class:literal) => {
        impl<S: Signature> Clone for $name<S> {
            fn clone(&self) -> Self {
                $name {
                    module: self.module.clone(),
                    _signature: PhantomData,
                }
            }
        }

        impl<S: Signature> std::fmt::Debug for $name<S> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("signature", &S::spec().name)
                    .field("session", &self.module.session.id())
                    .finish()
            }
        }

        impl<S: Signature> $name<S> {
            /// Creates the module in a new session of `dspex`, with the pool's LM.
            pub async fn new(dspex: &Dspex) -> Result<Self> {
                Self::create(dspex, None).await
            }

            /// Creates the module with its own LM.
            pub async fn with_lm(dspex: &Dspex, lm: crate::Lm) -> Result<Self> {
                Self::create(dspex, Some(lm)).await
            }

            async fn create(dspex: &Dspex, lm: Option<crate::Lm>) -> Result<Self> {
                let session = dspex.bridge.create_session().await?;
                let instance = session
                    .create_instance(
                        $class,
                        Some(S::spec()),
                        Vec::new(),
                        Default::default(),
                        lm.as_ref(),
                    )
                    .await?;
                Ok($name {
                    module: Arc::new(Module { instance, session }),
                    _signature: PhantomData,
                })
            }

            /// The underlying instance, for generic method calls (`save`, `load`, ...).
            pub fn instance(&self) -> &Instance {
                &self.module.instance
            }

            async fn run(&self, input: &S::Input, options: &CallOptions) -> Result<Prediction> {
                Ok(self
                    .module
                    .instance
                    .call_with(input.to_inputs(), options)
                    .await?)
            }
        }
    };
}

module_common!(Predict, "dspy.Predict");
module_common!(ChainOfThought, "dspy.ChainOfThought");

impl<S: Signature> Predict<S> {
    /// Runs the module on one input.
    pub async fn call(&self, input: S::Input) -> Result<S::Output> {
        self.call_with(input, &CallOptions::default()).await
    }

    /// Runs the module with options (an LM for this call, history).
    pub async fn call_with(&self, input: S::Input, options: &CallOptions) -> Result<S::Output> {
        decode::<S>(self.run(&input, options).await?)
    }
}

impl<S: Signature> ChainOfThought<S> {
    /// Runs the module on one input.
    pub async fn call(&self, input: S::Input) -> Result<Reasoned<S::Output>> {
        self.call_with(input, &CallOptions::default()).await
    }

    /// Runs the module with options (an LM for this call, history).
    pub async fn call_with(
        &self,
        input: S::Input,
        options: &CallOptions,
    ) -> Result<Reasoned<S::Output>> {
        decode_reasoned::<S>(self.run(&input, options).await?)
    }
}
