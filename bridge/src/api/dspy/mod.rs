//! DSPy on the platform: signatures described in Rust, LMs, module instances in sessions, typed
//! results, batches, and any Python class by dotted path.
//!
//! ```no_run
//! # async fn demo() -> Result<(), snakepit_grpc_bridge::BridgeError> {
//! use snakepit_grpc_bridge::api::dspy::{FieldType, Lm, SignatureSpec};
//! use snakepit_grpc_bridge::{Bridge, args};
//!
//! let bridge = Bridge::builder()
//!     .lm(Lm::dummy(vec![args([("answer", "Paris"), ("confidence", "0.9")])]))
//!     .start()
//!     .await?;
//! let qa = SignatureSpec::new("QA")
//!     .instructions("Answer questions with short factoid answers.")
//!     .input("question", FieldType::String)
//!     .output("answer", FieldType::String)
//!     .output("confidence", FieldType::Float);
//! let prediction = bridge.predict(&qa, args([("question", "Capital of France?")])).await?;
//! assert_eq!(prediction.outputs["answer"].as_str(), Some("Paris"));
//! # Ok(()) }
//! ```

mod field_types;
mod instance;
mod prediction;
mod signature;
mod state;
mod stream;

pub use crate::lm::{Lm, LmAdapter};
pub use field_types::{FieldType, ObjectField, ObjectType};
pub use instance::Instance;
pub use prediction::{CallOptions, CallResult, HistoryEntry, Prediction, Usage};
pub use signature::{FieldSpec, SignatureSpec};
pub use state::ModuleState;
pub use stream::{FieldChunk, PredictionStream, StreamItem};

use tracing::Instrument;

use crate::bridge::Bridge;
use crate::convert::map_to_proto;
use crate::error::Result;
use crate::proto as pb;
use crate::telemetry::CallScope;
use crate::value::Map;
use prediction::{call_result, prediction};

/// A `RunModuleRequest` naming its signature and state by hash only.
fn module_request(
    class_path: &str,
    signature: &SignatureSpec,
    state: Option<&ModuleState>,
    kwargs: &Map,
    inputs: &Map,
    options: pb::CallOptions,
) -> pb::RunModuleRequest {
    pb::RunModuleRequest {
        class_path: class_path.to_owned(),
        signature: None,
        signature_hash: signature.registered().hash.to_vec(),
        kwargs: Some(map_to_proto(kwargs)),
        inputs: Some(map_to_proto(inputs)),
        options: Some(options),
        state_hash: state.map(|s| s.hash().to_vec()).unwrap_or_default(),
        state: String::new(),
    }
}

/// `request` with the definitions it names by hash (for a worker that does not hold them).
fn with_definitions(
    request: pb::RunModuleRequest,
    signature: &SignatureSpec,
    state: Option<&ModuleState>,
) -> pb::RunModuleRequest {
    pb::RunModuleRequest {
        signature: Some(signature.registered().definition.clone()),
        state: state.map(|s| s.json().to_owned()).unwrap_or_default(),
        ..request
    }
}

impl Bridge {
    /// Runs a module without a session, on the least-loaded worker; each worker keeps one
    /// instance per (class, signature, kwargs), so the signature is built only once. The
    /// signature travels by hash; a worker that does not hold it (fresh, replaced, or one that
    /// evicted it) says so, and the call is sent once more with the definition.
    pub async fn run_module(
        &self,
        class_path: &str,
        signature: &SignatureSpec,
        kwargs: Map,
        inputs: Map,
        options: &CallOptions,
    ) -> Result<Prediction> {
        self.run_module_with_state(class_path, signature, None, kwargs, inputs, options)
            .await
    }

    /// [`run_module`](Self::run_module) on a module with a tuned `state` applied (demos,
    /// instructions: see [`ModuleState`]). The state travels by hash like the signature: a worker
    /// that does not hold it gets it once, and keeps a module with it applied.
    pub async fn run_module_with_state(
        &self,
        class_path: &str,
        signature: &SignatureSpec,
        state: Option<&ModuleState>,
        kwargs: Map,
        inputs: Map,
        options: &CallOptions,
    ) -> Result<Prediction> {
        let scope = CallScope::new(class_path, &signature.name, None);
        let request = module_request(
            class_path,
            signature,
            state,
            &kwargs,
            &inputs,
            scope.options(options),
        );
        let with_definition = || with_definitions(request.clone(), signature, state);
        let (request, with_definition) = (&request, &with_definition);
        // Session-less and stateless: safe to send again once no attempt runs (the worker crashed,
        // or confirmed that it cancelled a timed-out attempt).
        // Boxed: the attempt's future (tonic, the fast path) is large, and a typed call nests
        // it in several more; on the heap it does not grow every caller's stack.
        let call = Box::pin(self.retrying(|| {
            self.call_fast(
                None,
                crate::fast::RUN_MODULE,
                request,
                Some(with_definition),
                options.lifts_pool_timeout(),
                |mut c, request| async move { c.run_module(request).await },
            )
        }));
        let result = async {
            let response = options.within_deadline(call).await?;
            scope.received(&response);
            prediction(call_result(response)?)
        }
        .instrument(scope.span().clone())
        .await;
        scope.finish(&result);
        result
    }

    /// `dspy.Predict(signature)(**inputs)` with the pool's LM.
    pub async fn predict(&self, signature: &SignatureSpec, inputs: Map) -> Result<Prediction> {
        self.run_module(
            "dspy.Predict",
            signature,
            Map::new(),
            inputs,
            &CallOptions::default(),
        )
        .await
    }

    /// `dspy.ChainOfThought(signature)(**inputs)` with the pool's LM; see [`Prediction::reasoning`].
    pub async fn chain_of_thought(
        &self,
        signature: &SignatureSpec,
        inputs: Map,
    ) -> Result<Prediction> {
        self.run_module(
            "dspy.ChainOfThought",
            signature,
            Map::new(),
            inputs,
            &CallOptions::default(),
        )
        .await
    }
}
