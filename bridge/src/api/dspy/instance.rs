//! Python objects in a session: DSPy modules (and any class by dotted path), their calls and
//! batches.

use tracing::Instrument;

use crate::api::sessions::Session;
use crate::bridge::Bridge;
use crate::convert::map_to_proto;
use crate::error::{BridgeError, Result};
use crate::proto::{self as pb, instance_response};
use crate::telemetry::CallScope;
use crate::value::{Map, ObjectRef, Value};

use super::prediction::{call_result, prediction};
use super::{CallOptions, CallResult, Lm, Prediction, SignatureSpec};

/// A Python object living in a session: a DSPy module or anything created by class path.
#[derive(Debug, Clone)]
pub struct Instance {
    bridge: Bridge,
    session_id: String,
    handle: ObjectRef,
}

/// The usage of a batch's results summed, and their spans together, as one response.
fn merged(results: &[pb::CallResponse]) -> pb::CallResponse {
    let mut usage = pb::Usage::default();
    let mut spans = Vec::new();
    for result in results {
        if let Some(u) = &result.usage {
            usage.prompt_tokens += u.prompt_tokens;
            usage.completion_tokens += u.completion_tokens;
            usage.total_tokens += u.total_tokens;
            usage.lm_calls += u.lm_calls;
            usage.cost += u.cost;
            if !u.model.is_empty() {
                usage.model.clone_from(&u.model);
            }
        }
        spans.extend(result.spans.iter().cloned());
    }
    pb::CallResponse {
        usage: Some(usage),
        spans,
        ..Default::default()
    }
}

impl Session {
    /// Creates an instance of any Python class by dotted path (`dspy.Predict`,
    /// `my_module.MyProgram`). With a signature, it is the first positional argument. Values in
    /// `kwargs` may be [`ObjectRef`]s of this session; `tools` may list names of Python tools or
    /// of this session's Rust tools.
    pub async fn create_instance(
        &self,
        class_path: &str,
        signature: Option<&SignatureSpec>,
        args: Vec<Value>,
        kwargs: Map,
        lm: Option<&Lm>,
    ) -> Result<Instance> {
        // Instances are made rarely: the definition always travels, and the worker keeps it under
        // its hash for the calls that name it.
        let registered = signature.map(SignatureSpec::registered);
        let request = pb::CreateInstanceRequest {
            session_id: self.id.clone(),
            class_path: class_path.to_owned(),
            signature: registered.as_ref().map(|r| r.definition.clone()),
            signature_hash: registered.map(|r| r.hash.to_vec()).unwrap_or_default(),
            args: Some(pb::ListValue {
                items: args.iter().map(Into::into).collect(),
            }),
            kwargs: Some(map_to_proto(&kwargs)),
            lm: lm.map(Lm::to_proto),
        };
        let response = self
            .bridge
            .call(Some(&self.id), |mut c| async move {
                c.create_instance(request).await
            })
            .await?
            .into_inner();
        match response.result {
            Some(instance_response::Result::Instance(handle)) => Ok(Instance {
                bridge: self.bridge.clone(),
                session_id: self.id.clone(),
                handle: ObjectRef {
                    id: handle.id,
                    type_name: handle.type_name,
                },
            }),
            Some(instance_response::Result::Error(error)) => Err(error.into()),
            None => Err(BridgeError::Protocol("an empty instance response".into())),
        }
    }

    /// The object behind a handle returned by an earlier call in this session.
    pub fn object(&self, handle: ObjectRef) -> Instance {
        Instance {
            bridge: self.bridge.clone(),
            session_id: self.id.clone(),
            handle,
        }
    }

    /// A `dspy.Predict` of `signature` in this session.
    pub async fn predict(&self, signature: &SignatureSpec, lm: Option<&Lm>) -> Result<Instance> {
        self.create_instance("dspy.Predict", Some(signature), Vec::new(), Map::new(), lm)
            .await
    }

    /// A `dspy.ChainOfThought` of `signature` in this session.
    pub async fn chain_of_thought(
        &self,
        signature: &SignatureSpec,
        lm: Option<&Lm>,
    ) -> Result<Instance> {
        self.create_instance(
            "dspy.ChainOfThought",
            Some(signature),
            Vec::new(),
            Map::new(),
            lm,
        )
        .await
    }

    /// A `dspy.ReAct` of `signature` using `tools` (Python tools or this session's Rust tools).
    pub async fn react(
        &self,
        signature: &SignatureSpec,
        tools: &[&str],
        max_iters: u32,
        lm: Option<&Lm>,
    ) -> Result<Instance> {
        let mut kwargs = Map::new();
        kwargs.insert(
            "tools".into(),
            Value::List(tools.iter().map(|t| Value::from(*t)).collect()),
        );
        kwargs.insert("max_iters".into(), Value::from(max_iters));
        self.create_instance("dspy.ReAct", Some(signature), Vec::new(), kwargs, lm)
            .await
    }
}

impl Instance {
    /// The handle, to pass as an argument to other calls in the same session.
    pub fn object_ref(&self) -> &ObjectRef {
        &self.handle
    }

    /// The Python class of the instance.
    pub fn type_name(&self) -> &str {
        &self.handle.type_name
    }

    /// The session the instance lives in (see [`Pool::session_worker`](snakepit::Pool::session_worker)
    /// for the worker that holds it).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Calls the module with keyword inputs (DSPy's async path) and returns its prediction.
    pub async fn call(&self, inputs: Map) -> Result<Prediction> {
        self.call_with(inputs, &CallOptions::default()).await
    }

    /// Calls the module with options (LM override, history).
    pub async fn call_with(&self, inputs: Map, options: &CallOptions) -> Result<Prediction> {
        prediction(
            self.call_method_with("__call__", Vec::new(), inputs, options)
                .await?,
        )
    }

    /// Calls a method that returns a DSPy prediction (a module's `forward`, or any method of a
    /// Python object that returns one), as a [`Prediction`].
    pub async fn call_method_prediction(
        &self,
        method: &str,
        args: Vec<Value>,
        kwargs: Map,
        options: &CallOptions,
    ) -> Result<Prediction> {
        prediction(self.call_method_with(method, args, kwargs, options).await?)
    }

    /// Calls any method with positional and keyword arguments.
    pub async fn call_method(
        &self,
        method: &str,
        args: Vec<Value>,
        kwargs: Map,
    ) -> Result<CallResult> {
        self.call_method_with(method, args, kwargs, &CallOptions::default())
            .await
    }

    /// Calls any method with options.
    pub async fn call_method_with(
        &self,
        method: &str,
        args: Vec<Value>,
        kwargs: Map,
        options: &CallOptions,
    ) -> Result<CallResult> {
        let scope = CallScope::new(&self.handle.type_name, method, Some(&self.session_id));
        let request = pb::CallInstanceRequest {
            session_id: self.session_id.clone(),
            instance_id: self.handle.id.clone(),
            method: method.to_owned(),
            args: Some(pb::ListValue {
                items: args.iter().map(Into::into).collect(),
            }),
            kwargs: Some(map_to_proto(&kwargs)),
            options: Some(scope.options(options)),
        };
        let call = Box::pin(async {
            self.bridge
                .call_fast(
                    Some(&self.session_id),
                    crate::fast::CALL_INSTANCE,
                    &request,
                    None,
                    options.lifts_pool_timeout(),
                    |mut c, request| async move { c.call_instance(request).await },
                )
                .await
                .map_err(|failed| failed.error)
        });
        let result = async {
            let response = options.within_deadline(call).await?;
            scope.received(&response);
            call_result(response)
        }
        .instrument(scope.span().clone())
        .await;
        scope.finish(&result);
        result
    }

    /// Reads an attribute.
    pub async fn get_attribute(&self, name: &str) -> Result<Value> {
        let request = pb::GetAttributeRequest {
            session_id: self.session_id.clone(),
            instance_id: self.handle.id.clone(),
            name: name.to_owned(),
        };
        let response = self
            .bridge
            .call(Some(&self.session_id), |mut c| async move {
                c.get_attribute(request).await
            })
            .await?;
        Ok(call_result(response.into_inner())?.value)
    }

    /// Runs the module on many inputs concurrently in its worker; results in input order, each
    /// with its own error. `max_concurrency` 0 means the worker's default (16).
    pub async fn batch(
        &self,
        inputs: &[Map],
        options: &CallOptions,
        max_concurrency: u32,
    ) -> Result<Vec<Result<Prediction>>> {
        let scope = CallScope::new(&self.handle.type_name, "batch", Some(&self.session_id));
        let request = pb::BatchRequest {
            session_id: self.session_id.clone(),
            instance_id: self.handle.id.clone(),
            inputs: inputs.iter().map(map_to_proto).collect(),
            options: Some(scope.options(options)),
            max_concurrency,
        };
        let call = self.bridge.call_unless_timed(
            Some(&self.session_id),
            options.lifts_pool_timeout(),
            |mut c| async move { c.batch_call(request).await },
        );
        let result = async {
            let response = options.within_deadline(call).await?.into_inner();
            scope.received(&merged(&response.results));
            if let Some(error) = response.error {
                return Err(error.into());
            }
            Ok(response
                .results
                .into_iter()
                .map(|r| call_result(r).and_then(prediction))
                .collect::<Vec<_>>())
        }
        .instrument(scope.span().clone())
        .await;
        scope.finish(&result);
        result
    }

    /// Deletes the instance from its session.
    pub async fn delete(self) -> Result<()> {
        let request = pb::DeleteInstanceRequest {
            session_id: self.session_id.clone(),
            instance_id: self.handle.id.clone(),
        };
        let response = self
            .bridge
            .call(Some(&self.session_id), |mut c| async move {
                c.delete_instance(request).await
            })
            .await?;
        call_result(response.into_inner()).map(drop)
    }
}
