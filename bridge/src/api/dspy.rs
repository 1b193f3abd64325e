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

use crate::api::sessions::Session;
use crate::bridge::Bridge;
use crate::convert::{map_to_proto, value_from_proto};
use crate::error::{BridgeError, Result};
use crate::proto::{self as pb, call_response, instance_response};
use crate::value::{Map, ObjectRef, Value};

/// The type of a signature field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldType {
    /// `str`.
    String,
    /// `int`.
    Integer,
    /// `float`.
    Float,
    /// `bool`.
    Boolean,
    /// `list[T]`.
    List(Box<FieldType>),
    /// `dict[str, T]`.
    Map(Box<FieldType>),
    /// `Optional[T]`.
    Optional(Box<FieldType>),
    /// `Literal[...]` of strings.
    Literal(Vec<String>),
    /// A nested object (a pydantic model on the Python side).
    Object(ObjectType),
}

/// A nested object type: a name and typed fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectType {
    /// The model's name.
    pub name: String,
    /// Its fields, in order.
    pub fields: Vec<ObjectField>,
}

/// One field of an [`ObjectType`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectField {
    /// Its name.
    pub name: String,
    /// Its type.
    pub field_type: FieldType,
    /// Its description.
    pub description: Option<String>,
}

fn schema(pairs: Vec<(&str, Value)>) -> Value {
    Value::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

impl FieldType {
    /// `list[inner]`.
    pub fn list(inner: FieldType) -> Self {
        FieldType::List(Box::new(inner))
    }

    /// `dict[str, inner]`.
    pub fn map(inner: FieldType) -> Self {
        FieldType::Map(Box::new(inner))
    }

    /// `Optional[inner]`.
    pub fn optional(inner: FieldType) -> Self {
        FieldType::Optional(Box::new(inner))
    }

    /// `Literal[...]`.
    pub fn literal<I: IntoIterator<Item = S>, S: Into<String>>(values: I) -> Self {
        FieldType::Literal(values.into_iter().map(Into::into).collect())
    }

    /// The JSON Schema (as a [`Value`] map) the worker turns into a Python type.
    pub fn json_schema(&self) -> Value {
        let kind = |t: &str| schema(vec![("type", Value::from(t))]);
        match self {
            FieldType::String => kind("string"),
            FieldType::Integer => kind("integer"),
            FieldType::Float => kind("number"),
            FieldType::Boolean => kind("boolean"),
            FieldType::List(inner) => schema(vec![
                ("type", "array".into()),
                ("items", inner.json_schema()),
            ]),
            FieldType::Map(inner) => schema(vec![
                ("type", "object".into()),
                ("additionalProperties", inner.json_schema()),
            ]),
            FieldType::Optional(inner) => schema(vec![(
                "anyOf",
                Value::List(vec![inner.json_schema(), kind("null")]),
            )]),
            FieldType::Literal(values) => schema(vec![(
                "enum",
                Value::List(values.iter().map(|v| Value::from(v.as_str())).collect()),
            )]),
            FieldType::Object(object) => {
                let mut properties = Map::new();
                let mut required = Vec::new();
                for field in &object.fields {
                    let mut field_schema = field.field_type.json_schema();
                    if let (Some(description), Value::Map(m)) =
                        (&field.description, &mut field_schema)
                    {
                        m.insert("description".into(), description.as_str().into());
                    }
                    properties.insert(field.name.clone(), field_schema);
                    if !matches!(field.field_type, FieldType::Optional(_)) {
                        required.push(Value::from(field.name.as_str()));
                    }
                }
                schema(vec![
                    ("type", "object".into()),
                    ("title", object.name.as_str().into()),
                    ("properties", Value::Map(properties)),
                    ("required", Value::List(required)),
                ])
            }
        }
    }
}

/// One input or output field of a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    /// Its name (a Python identifier).
    pub name: String,
    /// Its description, shown to the LM.
    pub description: String,
    /// Its prefix, if not DSPy's default.
    pub prefix: String,
    /// Its type.
    pub field_type: FieldType,
}

impl FieldSpec {
    /// A field without description.
    pub fn new(name: impl Into<String>, field_type: FieldType) -> Self {
        FieldSpec {
            name: name.into(),
            description: String::new(),
            prefix: String::new(),
            field_type,
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Sets the prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    fn to_proto(&self) -> pb::FieldSpec {
        pb::FieldSpec {
            name: self.name.clone(),
            description: self.description.clone(),
            prefix: self.prefix.clone(),
            schema: Some((&self.field_type.json_schema()).into()),
        }
    }
}

/// A DSPy signature described in Rust. The worker builds the `dspy.Signature` once per distinct
/// spec and caches it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignatureSpec {
    /// The signature's name.
    pub name: String,
    /// Its instructions (the docstring of a Python signature).
    pub instructions: String,
    /// Input fields, in order.
    pub inputs: Vec<FieldSpec>,
    /// Output fields, in order.
    pub outputs: Vec<FieldSpec>,
}

impl SignatureSpec {
    /// An empty signature called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        SignatureSpec {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Sets the instructions.
    pub fn instructions(mut self, instructions: impl Into<String>) -> Self {
        self.instructions = instructions.into();
        self
    }

    /// Adds an input field.
    pub fn input(self, name: impl Into<String>, field_type: FieldType) -> Self {
        self.input_field(FieldSpec::new(name, field_type))
    }

    /// Adds an input field with description or prefix.
    pub fn input_field(mut self, field: FieldSpec) -> Self {
        self.inputs.push(field);
        self
    }

    /// Adds an output field.
    pub fn output(self, name: impl Into<String>, field_type: FieldType) -> Self {
        self.output_field(FieldSpec::new(name, field_type))
    }

    /// Adds an output field with description or prefix.
    pub fn output_field(mut self, field: FieldSpec) -> Self {
        self.outputs.push(field);
        self
    }

    pub(crate) fn to_proto(&self) -> pb::SignatureSpec {
        pb::SignatureSpec {
            name: self.name.clone(),
            instructions: self.instructions.clone(),
            inputs: self.inputs.iter().map(FieldSpec::to_proto).collect(),
            outputs: self.outputs.iter().map(FieldSpec::to_proto).collect(),
        }
    }
}

/// How DSPy formats prompts for the LM and parses its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LmAdapter {
    /// `dspy.ChatAdapter` (without the silent JSON fallback, which would cost a second LM call).
    #[default]
    Chat,
    /// `dspy.JSONAdapter`.
    Json,
    /// `dspy.XMLAdapter`.
    Xml,
}

#[derive(Debug, Clone, PartialEq)]
enum LmKind {
    Dummy(Value),
    Custom {
        class_path: String,
        kwargs: Map,
    },
    LiteLlm {
        model: String,
        api_base: Option<String>,
        api_key_env: Option<String>,
        temperature: Option<f64>,
        max_tokens: Option<u32>,
        cache: Option<bool>,
    },
}

/// A language model for DSPy.
///
/// ```
/// use snakepit_grpc_bridge::api::dspy::{Lm, LmAdapter};
/// let real = Lm::new("openai/gpt-4o-mini").api_key_env("OPENAI_API_KEY").temperature(0.0);
/// let offline = Lm::dummy(vec![snakepit_grpc_bridge::args([("answer", "42")])]).adapter(LmAdapter::Json);
/// # let _ = (real, offline);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Lm {
    kind: LmKind,
    adapter: LmAdapter,
}

impl Lm {
    /// `dspy.LM(model)`: any LiteLLM model string, e.g. `openai/gpt-4o-mini`.
    pub fn new(model: impl Into<String>) -> Self {
        Lm {
            kind: LmKind::LiteLlm {
                model: model.into(),
                api_base: None,
                api_key_env: None,
                temperature: None,
                max_tokens: None,
                cache: None,
            },
            adapter: LmAdapter::default(),
        }
    }

    /// `dspy.utils.DummyLM(answers)`: a list of answer maps served in order, or a map from prompt
    /// substrings to answer maps. Values may be native or strings; DSPy coerces them.
    pub fn dummy(answers: impl Into<Value>) -> Self {
        Lm {
            kind: LmKind::Dummy(answers.into()),
            adapter: LmAdapter::default(),
        }
    }

    /// Any `dspy.BaseLM` subclass importable in the workers, created with `kwargs` (and the
    /// adapter, when its constructor takes one): your own LM client, or a test double.
    pub fn custom(class_path: impl Into<String>, kwargs: Map) -> Self {
        Lm {
            kind: LmKind::Custom {
                class_path: class_path.into(),
                kwargs,
            },
            adapter: LmAdapter::default(),
        }
    }

    /// Chooses the adapter.
    pub fn adapter(mut self, adapter: LmAdapter) -> Self {
        self.adapter = adapter;
        self
    }

    fn litellm(mut self, set: impl FnOnce(&mut LmKind)) -> Self {
        set(&mut self.kind);
        self
    }

    /// The API base URL.
    pub fn api_base(self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.litellm(|k| {
            if let LmKind::LiteLlm { api_base, .. } = k {
                *api_base = Some(url)
            }
        })
    }

    /// The environment variable (of the worker processes) holding the API key. The key itself
    /// never crosses the bridge.
    pub fn api_key_env(self, variable: impl Into<String>) -> Self {
        let variable = variable.into();
        self.litellm(|k| {
            if let LmKind::LiteLlm { api_key_env, .. } = k {
                *api_key_env = Some(variable)
            }
        })
    }

    /// The sampling temperature.
    pub fn temperature(self, value: f64) -> Self {
        self.litellm(|k| {
            if let LmKind::LiteLlm { temperature, .. } = k {
                *temperature = Some(value)
            }
        })
    }

    /// The completion token limit.
    pub fn max_tokens(self, value: u32) -> Self {
        self.litellm(|k| {
            if let LmKind::LiteLlm { max_tokens, .. } = k {
                *max_tokens = Some(value)
            }
        })
    }

    /// Whether DSPy caches completions.
    pub fn cache(self, value: bool) -> Self {
        self.litellm(|k| {
            if let LmKind::LiteLlm { cache, .. } = k {
                *cache = Some(value)
            }
        })
    }

    pub(crate) fn to_proto(&self) -> pb::LmConfig {
        let kind = match &self.kind {
            LmKind::Dummy(answers) => pb::lm_config::Kind::Dummy(pb::DummyLmConfig {
                answers: Some(answers.into()),
            }),
            LmKind::Custom { class_path, kwargs } => {
                pb::lm_config::Kind::Custom(pb::CustomLmConfig {
                    class_path: class_path.clone(),
                    kwargs: Some(map_to_proto(kwargs)),
                })
            }
            LmKind::LiteLlm {
                model,
                api_base,
                api_key_env,
                temperature,
                max_tokens,
                cache,
            } => pb::lm_config::Kind::Litellm(pb::LiteLlmConfig {
                model: model.clone(),
                api_base: api_base.clone().unwrap_or_default(),
                api_key_env: api_key_env.clone().unwrap_or_default(),
                temperature: *temperature,
                max_tokens: *max_tokens,
                cache: *cache,
            }),
        };
        pb::LmConfig {
            kind: Some(kind),
            adapter: match self.adapter {
                LmAdapter::Chat => "chat",
                LmAdapter::Json => "json",
                LmAdapter::Xml => "xml",
            }
            .into(),
        }
    }

    /// The configuration as protobuf bytes, for a worker's settings file.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(&self.to_proto())
    }
}

/// Options of one call.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CallOptions {
    /// Overrides the LM of the instance (or of the pool) for this call.
    pub lm: Option<Lm>,
    /// Returns the prompt messages and raw completions in [`Prediction::history`].
    pub history: bool,
}

impl CallOptions {
    /// Uses `lm` for this call.
    pub fn lm(mut self, lm: Lm) -> Self {
        self.lm = Some(lm);
        self
    }

    /// Asks for the call's history.
    pub fn with_history(mut self) -> Self {
        self.history = true;
        self
    }

    fn to_proto(&self) -> pb::CallOptions {
        pb::CallOptions {
            lm: self.lm.as_ref().map(Lm::to_proto),
            history: self.history,
        }
    }
}

/// Tokens an LM call used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
    /// LM requests made.
    pub lm_calls: u32,
}

/// One LM request of a call: what was sent and what came back.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// The prompt messages, a list of `{role, content}` maps.
    pub messages: Value,
    /// The raw completions.
    pub outputs: Vec<String>,
    /// The model.
    pub model: String,
}

/// The result of a module call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Prediction {
    /// The output fields (for ChainOfThought also `reasoning`; for ReAct also `trajectory`).
    pub outputs: Map,
    /// Tokens used.
    pub usage: Usage,
    /// Prompts and completions, when asked for with [`CallOptions::with_history`].
    pub history: Vec<HistoryEntry>,
}

impl Prediction {
    /// One output field.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.outputs.get(field)
    }

    /// The reasoning of a ChainOfThought call.
    pub fn reasoning(&self) -> Option<&str> {
        self.outputs.get("reasoning").and_then(Value::as_str)
    }
}

/// The value and usage of a generic method call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CallResult {
    /// What the method returned: plain data, or an [`ObjectRef`] to an object kept in the session.
    pub value: Value,
    /// Tokens used by LM calls during the method.
    pub usage: Usage,
    /// Prompts and completions, when asked for.
    pub history: Vec<HistoryEntry>,
}

fn call_result(response: pb::CallResponse) -> Result<CallResult> {
    let usage = response.usage.unwrap_or_default();
    let history = response
        .history
        .into_iter()
        .map(|h| {
            Ok(HistoryEntry {
                messages: value_from_proto(h.messages)?,
                outputs: h.outputs,
                model: h.model,
            })
        })
        .collect::<Result<_>>()?;
    match response.result {
        Some(call_response::Result::Value(value)) => Ok(CallResult {
            value: Value::try_from(value)?,
            usage: Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                total_tokens: usage.total_tokens,
                lm_calls: usage.lm_calls,
            },
            history,
        }),
        Some(call_response::Result::Error(error)) => Err(error.into()),
        None => Err(BridgeError::Protocol("an empty call response".into())),
    }
}

fn prediction(result: CallResult) -> Result<Prediction> {
    match result.value {
        Value::Map(outputs) => Ok(Prediction {
            outputs,
            usage: result.usage,
            history: result.history,
        }),
        other => Err(BridgeError::Protocol(format!(
            "a module call returned a {} instead of a prediction",
            other.kind()
        ))),
    }
}

/// A Python object living in a session: a DSPy module or anything created by class path.
#[derive(Debug, Clone)]
pub struct Instance {
    bridge: Bridge,
    session_id: String,
    handle: ObjectRef,
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
        let request = pb::CreateInstanceRequest {
            session_id: self.id.clone(),
            class_path: class_path.to_owned(),
            signature: signature.map(SignatureSpec::to_proto),
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
        let request = pb::CallInstanceRequest {
            session_id: self.session_id.clone(),
            instance_id: self.handle.id.clone(),
            method: method.to_owned(),
            args: Some(pb::ListValue {
                items: args.iter().map(Into::into).collect(),
            }),
            kwargs: Some(map_to_proto(&kwargs)),
            options: Some(options.to_proto()),
        };
        let response = self
            .bridge
            .call_fast(
                Some(&self.session_id),
                crate::fast::CALL_INSTANCE,
                request,
                |mut c, request| async move { c.call_instance(request).await },
            )
            .await
            .map_err(|failed| failed.error)?;
        call_result(response)
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
        let request = pb::BatchRequest {
            session_id: self.session_id.clone(),
            instance_id: self.handle.id.clone(),
            inputs: inputs.iter().map(map_to_proto).collect(),
            options: Some(options.to_proto()),
            max_concurrency,
        };
        let response = self
            .bridge
            .call(Some(&self.session_id), |mut c| async move {
                c.batch_call(request).await
            })
            .await?
            .into_inner();
        if let Some(error) = response.error {
            return Err(error.into());
        }
        Ok(response
            .results
            .into_iter()
            .map(|r| call_result(r).and_then(prediction))
            .collect())
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

impl Bridge {
    /// Runs a module without a session, on the least-loaded worker; each worker keeps one
    /// instance per (class, signature, kwargs), so the signature is built only once.
    pub async fn run_module(
        &self,
        class_path: &str,
        signature: &SignatureSpec,
        kwargs: Map,
        inputs: Map,
        options: &CallOptions,
    ) -> Result<Prediction> {
        let request = pb::RunModuleRequest {
            class_path: class_path.to_owned(),
            signature: Some(signature.to_proto()),
            kwargs: Some(map_to_proto(&kwargs)),
            inputs: Some(map_to_proto(&inputs)),
            options: Some(options.to_proto()),
        };
        // Session-less and stateless: safe to send again once no attempt runs (the worker crashed,
        // or confirmed that it cancelled a timed-out attempt).
        let response = self
            .retrying(|| {
                self.call_fast(
                    None,
                    crate::fast::RUN_MODULE,
                    request.clone(),
                    |mut c, request| async move { c.run_module(request).await },
                )
            })
            .await?;
        prediction(call_result(response)?)
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
