//! [`Predictor`]: one DSPy predictor of a program, its tuned state, and where its calls go.

use std::sync::Arc;

use snakepit_grpc_bridge::Map;
use snakepit_grpc_bridge::Value;
use snakepit_grpc_bridge::api::dspy::{
    CallOptions, Instance, Lm, ModuleState, Prediction, SignatureSpec,
};

use crate::dspex::Dspex;
use crate::error::Result;
use crate::state::PredictorState;

/// Which DSPy module a predictor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PredictorKind {
    /// `dspy.Predict`.
    Predict,
    /// `dspy.ChainOfThought`: a `Predict` (named `predict` inside it) whose signature has a
    /// `reasoning` output first.
    ChainOfThought,
}

impl PredictorKind {
    /// The Python class.
    pub fn class_path(self) -> &'static str {
        match self {
            PredictorKind::Predict => "dspy.Predict",
            PredictorKind::ChainOfThought => "dspy.ChainOfThought",
        }
    }

    /// The name of the predictor inside the module, as DSPy's `named_parameters` gives it.
    fn local_name(self) -> &'static str {
        match self {
            PredictorKind::Predict => "self",
            PredictorKind::ChainOfThought => "predict",
        }
    }

    /// The DSPy name of the predictor of a module at `path` of a program (`answer.predict` for
    /// a ChainOfThought at `answer`; `self` for a program that is one Predict).
    pub fn dspy_name(self, path: &str) -> String {
        match (self, path.is_empty()) {
            (_, true) => self.local_name().to_owned(),
            (PredictorKind::Predict, false) => path.to_owned(),
            (PredictorKind::ChainOfThought, false) => format!("{path}.predict"),
        }
    }

    /// The fields of the predictor's signature in DSPy's order.
    pub(crate) fn field_names(self, spec: &SignatureSpec) -> Vec<String> {
        let mut names: Vec<String> = spec.inputs.iter().map(|f| f.name.clone()).collect();
        if self == PredictorKind::ChainOfThought {
            names.push("reasoning".into());
        }
        names.extend(spec.outputs.iter().map(|f| f.name.clone()));
        names
    }
}

/// A signature: a typed one's static spec, or one built at run time (ReAct's).
#[derive(Clone, Debug)]
pub(crate) enum Spec {
    Static(&'static SignatureSpec),
    Owned(Arc<SignatureSpec>),
}

impl std::ops::Deref for Spec {
    type Target = SignatureSpec;

    fn deref(&self) -> &SignatureSpec {
        match self {
            Spec::Static(spec) => spec,
            Spec::Owned(spec) => spec,
        }
    }
}

impl From<&'static SignatureSpec> for Spec {
    fn from(spec: &'static SignatureSpec) -> Self {
        Spec::Static(spec)
    }
}

impl From<SignatureSpec> for Spec {
    fn from(spec: SignatureSpec) -> Self {
        Spec::Owned(Arc::new(spec))
    }
}

/// A tuned state, with the text a worker applies (by hash).
#[derive(Debug)]
struct Tuned {
    state: PredictorState,
    module: ModuleState,
}

/// Where a predictor's calls go.
#[derive(Clone, Debug)]
enum Route {
    /// Any worker: a module with the state applied, kept per worker by hash.
    Pool,
    /// Inside one `forward` of an optimiser's run: the module at `path` of the program copy
    /// that issued `token`, in that forward's trace (see ARCHITECTURE.md).
    Traced(Arc<Traced>),
}

#[derive(Debug)]
struct Traced {
    host: Instance,
    token: String,
    path: String,
}

/// One DSPy predictor of a program: the signature, the module kind, its tuned state (demos,
/// instructions) and its LM. [`Predict`](crate::Predict) and
/// [`ChainOfThought`](crate::ChainOfThought) are typed faces of it; programs list theirs with
/// [`Program::predictors`](crate::Program::predictors).
#[derive(Clone)]
pub struct Predictor {
    dspex: Dspex,
    kind: PredictorKind,
    spec: Spec,
    lm: Option<Lm>,
    tuned: Option<Arc<Tuned>>,
    route: Route,
}

impl std::fmt::Debug for Predictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Predictor")
            .field("kind", &self.kind)
            .field("signature", &self.spec.name)
            .field(
                "demos",
                &self.tuned.as_ref().map_or(0, |t| t.state.demos.len()),
            )
            .field("traced", &matches!(self.route, Route::Traced(_)))
            .finish()
    }
}

impl Predictor {
    pub(crate) fn new(
        dspex: &Dspex,
        kind: PredictorKind,
        spec: impl Into<Spec>,
        lm: Option<Lm>,
    ) -> Self {
        Predictor {
            dspex: dspex.clone(),
            kind,
            spec: spec.into(),
            lm,
            tuned: None,
            route: Route::Pool,
        }
    }

    /// The pool its calls go to.
    pub fn dspex(&self) -> &Dspex {
        &self.dspex
    }

    /// The module kind.
    pub fn kind(&self) -> PredictorKind {
        self.kind
    }

    /// The signature.
    pub fn signature(&self) -> &SignatureSpec {
        &self.spec
    }

    /// The LM of this predictor, if it has its own.
    pub fn lm(&self) -> Option<&Lm> {
        self.lm.as_ref()
    }

    /// Whether an optimiser or a loaded file has tuned it.
    pub fn is_tuned(&self) -> bool {
        self.tuned.is_some()
    }

    /// Its state: tuned, or what DSPy gives a fresh predictor.
    pub fn state(&self) -> PredictorState {
        match &self.tuned {
            Some(tuned) => tuned.state.clone(),
            None => PredictorState::fresh(self.kind, &self.spec),
        }
    }

    /// The demos it shows the LM (empty until tuned).
    pub fn demos(&self) -> &[crate::state::Demo] {
        self.tuned.as_ref().map_or(&[], |t| &t.state.demos)
    }

    /// The same predictor with `state`.
    pub fn with_state(&self, state: PredictorState) -> Self {
        let mut module = serde_json::Map::new();
        module.insert(self.kind.local_name().to_owned(), state.to_json());
        let text = serde_json::Value::Object(module).to_string();
        Predictor {
            tuned: Some(Arc::new(Tuned {
                state,
                module: ModuleState::new(text),
            })),
            ..self.clone()
        }
    }

    /// The same predictor with its own LM.
    pub fn with_lm(&self, lm: Lm) -> Self {
        Predictor {
            lm: Some(lm),
            ..self.clone()
        }
    }

    /// The same predictor, its calls going into the forward `token` of an optimiser's run.
    pub(crate) fn traced(&self, host: &Instance, token: &str, path: &str) -> Self {
        Predictor {
            route: Route::Traced(Arc::new(Traced {
                host: host.clone(),
                token: token.to_owned(),
                path: path.to_owned(),
            })),
            ..self.clone()
        }
    }

    /// The entry an optimiser's run needs to build this predictor's module in Python.
    pub(crate) fn host_entry(&self, path: &str) -> Value {
        let registered = self.spec.definition_bytes();
        let mut entry = Map::new();
        entry.insert("path".into(), Value::from(path));
        entry.insert("class".into(), Value::from(self.kind.class_path()));
        entry.insert("signature".into(), Value::Bytes(registered.1));
        entry.insert("signature_hash".into(), Value::Bytes(registered.0));
        entry.insert(
            "state".into(),
            Value::from(self.tuned.as_ref().map_or("", |t| t.module.json())),
        );
        if let Some(lm) = &self.lm {
            // The predictor's own LM, which DSPy prefers to the run's (`predictor.lm`).
            entry.insert("lm".into(), Value::bytes(lm.to_config_bytes()));
        }
        Value::Map(entry)
    }

    /// Runs the predictor on `inputs` (its usage counts in the enclosing
    /// [`measured`](crate::usage::measured) scope).
    pub async fn run(&self, inputs: Map, options: &CallOptions) -> Result<Prediction> {
        let prediction = self.run_unmeasured(inputs, options).await?;
        crate::usage::record(prediction.usage);
        Ok(prediction)
    }

    /// Runs the predictor on `inputs`, streamed: each output field in pieces as the LM writes
    /// it, then the prediction (whose usage counts in the enclosing
    /// [`measured`](crate::usage::measured) scope when it arrives). Inside an optimiser's
    /// `forward` the call runs whole and the stream holds the prediction alone.
    pub async fn stream(
        &self,
        inputs: Map,
        options: &CallOptions,
    ) -> Result<snakepit_grpc_bridge::api::dspy::PredictionStream> {
        use futures_util::StreamExt;
        use snakepit_grpc_bridge::api::dspy::StreamItem;
        let options = &*self.with_own_lm(options);
        let stream = match &self.route {
            Route::Pool => {
                self.dspex
                    .bridge
                    .stream_module(
                        self.kind.class_path(),
                        &self.spec,
                        self.tuned.as_ref().map(|t| &t.module),
                        Map::new(),
                        inputs,
                        options,
                    )
                    .await?
            }
            Route::Traced(_) => {
                let prediction = self.run_unmeasured(inputs, options).await;
                futures_util::stream::once(async move {
                    prediction.map(StreamItem::Done).map_err(|e| match e {
                        crate::Error::Bridge(e) => e,
                        other => {
                            snakepit_grpc_bridge::BridgeError::Protocol(crate::error_chain(&other))
                        }
                    })
                })
                .boxed()
            }
        };
        Ok(stream
            .inspect(|item| {
                if let Ok(StreamItem::Done(prediction)) = item {
                    crate::usage::record(prediction.usage);
                }
            })
            .boxed())
    }

    /// `options`, with this predictor's own LM unless the call names one.
    fn with_own_lm<'a>(&self, options: &'a CallOptions) -> std::borrow::Cow<'a, CallOptions> {
        match (&options.lm, &self.lm) {
            (None, Some(lm)) => std::borrow::Cow::Owned(options.clone().lm(lm.clone())),
            _ => std::borrow::Cow::Borrowed(options),
        }
    }

    async fn run_unmeasured(&self, inputs: Map, options: &CallOptions) -> Result<Prediction> {
        let options = &*self.with_own_lm(options);
        Ok(match &self.route {
            Route::Pool => {
                self.dspex
                    .bridge
                    .run_module_with_state(
                        self.kind.class_path(),
                        &self.spec,
                        self.tuned.as_ref().map(|t| &t.module),
                        Map::new(),
                        inputs,
                        options,
                    )
                    .await?
            }
            Route::Traced(traced) => {
                let args = vec![
                    Value::from(traced.token.as_str()),
                    Value::from(traced.path.as_str()),
                ];
                traced
                    .host
                    .call_method_prediction("call_traced", args, inputs, options)
                    .await?
            }
        })
    }
}
