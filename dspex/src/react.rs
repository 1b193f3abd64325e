//! [`ReAct`]: DSPy's tool-using agent, with typed Rust tools.
//!
//! The loop is DSPy's `dspy.ReAct` (`predict/react.py` of the pinned DSPy), run in Rust: the same
//! two predictors with the same signatures and instructions (`react`, a Predict that picks the
//! next thought, tool and arguments; `extract`, a ChainOfThought that reads the trajectory and
//! answers), the same trajectory format and the same `finish` tool. The tools are Rust functions
//! called in the owner process, and the model sees each tool's real argument names and types,
//! from the Rust type of its arguments. Being a [`Program`], a ReAct agent is evaluated,
//! optimised, saved and loaded like any other, under DSPy's names (`react`, `extract.predict`).

use std::fmt::Write as _;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use snakepit_grpc_bridge::api::dspy::{CallOptions, FieldType, SignatureSpec};
use snakepit_grpc_bridge::{BridgeError, Map, Value};

use crate::dspex::Dspex;
use crate::error::{Error, Result};
use crate::modules::decode;
use crate::predictor::{Predictor, PredictorKind};
use crate::program::{Module, Program, join_path};
use crate::signature::{Signature, SignatureInput};
use crate::state::{default_instructions, quoted_names};
use crate::types::DspyType;

type Run = Arc<dyn Fn(Map) -> BoxFuture<'static, std::result::Result<Value, String>> + Send + Sync>;

/// A Rust function a [`ReAct`] agent can call. Its arguments are the fields of a `#[dspy_type]`
/// struct (or one argument `input` of any other field type), so the model sees their names,
/// types and descriptions.
///
/// ```
/// use dspex::prelude::*;
/// use dspex::react::Tool;
///
/// /// Looks a city's weather up.
/// #[dspy_type]
/// pub struct Weather {
///     /// The city.
///     pub city: String,
/// }
///
/// let weather = Tool::new("weather", "Today's weather in a city.", |args: Weather| async move {
///     Ok::<_, String>(format!("sunny in {}", args.city))
/// });
/// assert_eq!(weather.name(), "weather");
/// ```
#[derive(Clone)]
pub struct Tool {
    name: String,
    description: String,
    args: Vec<(String, FieldType, Option<String>)>,
    run: Run,
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool")
            .field("name", &self.name)
            .field("args", &self.args)
            .finish()
    }
}

impl Tool {
    /// A tool named `name` that runs `run` on its decoded arguments. An `Err` becomes the
    /// observation `Execution error in <name>: <error>`, as in DSPy; the agent goes on.
    pub fn new<A, R, E, F, Fut>(
        name: impl Into<String>,
        description: impl Into<String>,
        run: F,
    ) -> Self
    where
        A: DspyType + Send + 'static,
        R: serde::Serialize,
        E: std::fmt::Display,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, E>> + Send + 'static,
    {
        let (args, single) = match A::field_type() {
            FieldType::Object(object) => (
                object
                    .fields
                    .into_iter()
                    .map(|f| (f.name, f.field_type, f.description))
                    .collect(),
                false,
            ),
            other => (vec![("input".to_owned(), other, None)], true),
        };
        let run = Arc::new(run);
        let run: Run = Arc::new(move |mut arguments: Map| {
            let value = if single {
                arguments.shift_remove("input").unwrap_or(Value::Null)
            } else {
                Value::Map(arguments)
            };
            let run = run.clone();
            async move {
                let args = A::from_value(value).map_err(|e| format!("bad arguments: {e}"))?;
                let result = run(args).await.map_err(|e| e.to_string())?;
                serde_json::to_value(result)
                    .map(Value::from)
                    .map_err(|e| format!("the result is not data: {e}"))
            }
            .boxed()
        });
        Tool {
            name: name.into(),
            description: description.into(),
            args,
            run,
        }
    }

    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The arguments as DSPy shows them: name → JSON Schema.
    pub fn args_schema(&self) -> Value {
        Value::Map(
            self.args
                .iter()
                .map(|(name, field_type, description)| {
                    let mut schema = field_type.json_schema();
                    if let (Some(d), Value::Map(m)) = (description, &mut schema) {
                        m.insert("description".into(), Value::from(d.as_str()));
                    }
                    (name.clone(), schema)
                })
                .collect(),
        )
    }

    /// DSPy's `str(tool)`: how the instructions list it.
    fn describe(&self) -> String {
        let description = if self.description.is_empty() {
            ".".to_owned()
        } else {
            format!(
                ", whose description is <desc>{}</desc>.",
                self.description.replace('\n', "  ")
            )
        };
        format!(
            "{}{description} It takes arguments {}.",
            self.name,
            python_repr(&self.args_schema())
        )
    }
}

/// The tools of a [`ReAct`] agent whose type names them, so that a `#[dspy_module]` holding the
/// agent can build it (`ReAct<QA, MyTools>`). For tools chosen at run time, use
/// [`ReAct::with_tools`].
pub trait Toolset: Send + Sync + 'static {
    /// The tools.
    fn tools() -> Vec<Tool>;

    /// The most steps before the agent must answer. Default 20 (DSPy's).
    fn max_iters() -> usize {
        20
    }
}

/// No tools beyond `finish` (the default; give tools with [`ReAct::with_tools`]).
#[derive(Debug)]
pub enum NoTools {}

impl Toolset for NoTools {
    fn tools() -> Vec<Tool> {
        Vec::new()
    }
}

/// One step of an agent's trajectory.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Step {
    /// The model's thought.
    pub thought: String,
    /// The tool it called.
    pub tool: String,
    /// The arguments it gave.
    pub args: Value,
    /// What the tool returned, as the model saw it.
    pub observation: String,
}

/// A ReAct result: the steps taken, the final reasoning and the typed outputs.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Acted<T> {
    /// The steps, in order.
    pub trajectory: Vec<Step>,
    /// The reasoning of the final answer.
    pub reasoning: String,
    /// The signature's outputs.
    pub output: T,
}

/// DSPy's ReAct agent for signature `S`, with Rust tools. See the [module](self) documentation.
///
/// ```no_run
/// # use dspex::prelude::*;
/// # use dspex::react::{ReAct, Tool};
/// # #[dspy_signature] pub struct QA { #[input] pub question: String, #[output] pub answer: String }
/// # #[dspy_type] pub struct Lookup { pub term: String }
/// # async fn demo(dspex: &Dspex) -> dspex::Result<()> {
/// let lookup = Tool::new("lookup", "Looks a term up.", |a: Lookup| async move {
///     Ok::<_, String>(format!("{} is a planet", a.term))
/// });
/// let agent = ReAct::<QA>::with_tools(dspex, vec![lookup]).max_iters(5);
/// let acted = agent.call(QAInput { question: "What is Mars?".into() }).await?;
/// println!("{} after {} steps", acted.output.answer, acted.trajectory.len());
/// # Ok(()) }
/// ```
pub struct ReAct<S: Signature, T: Toolset = NoTools> {
    react: Predictor,
    extract: Predictor,
    tools: Arc<Vec<Tool>>,
    max_iters: usize,
    _types: PhantomData<fn() -> (S, T)>,
}

impl<S: Signature, T: Toolset> Clone for ReAct<S, T> {
    fn clone(&self) -> Self {
        ReAct {
            react: self.react.clone(),
            extract: self.extract.clone(),
            tools: self.tools.clone(),
            max_iters: self.max_iters,
            _types: PhantomData,
        }
    }
}

impl<S: Signature, T: Toolset> std::fmt::Debug for ReAct<S, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReAct")
            .field("signature", &S::spec().name)
            .field(
                "tools",
                &self.tools.iter().map(Tool::name).collect::<Vec<_>>(),
            )
            .field("max_iters", &self.max_iters)
            .finish()
    }
}

const FINISH: &str = "finish";

fn finish_description(outputs: &str) -> String {
    format!(
        "Marks the task as complete. That is, signals that all information for producing the outputs, i.e. {outputs}, are now available to be extracted."
    )
}

/// DSPy's ReAct signatures for `spec` and `tools`: (react, extract).
fn signatures(spec: &SignatureSpec, tools: &[Tool]) -> (SignatureSpec, SignatureSpec) {
    let (inputs, outputs) = (quoted_names(&spec.inputs), quoted_names(&spec.outputs));
    let instructions = if spec.instructions.is_empty() {
        default_instructions(spec)
    } else {
        spec.instructions.clone()
    };
    let mut lines = vec![
        format!("{instructions}\n"),
        format!(
            "You are an Agent. In each episode, you will be given the fields {inputs} as input. And you can see your past trajectory so far."
        ),
        format!(
            "Your goal is to use one or more of the supplied tools to collect any necessary information for producing {outputs}.\n"
        ),
        "To do this, you will interleave next_thought, next_tool_name, and next_tool_args in each turn, and also when finishing the task.".into(),
        "After each tool call, you receive a resulting observation, which gets appended to your trajectory.\n".into(),
        "When writing next_thought, you may reason about the current situation and plan for future steps.".into(),
        "When selecting the next_tool_name and its next_tool_args, the tool must be one of:\n".into(),
    ];
    let mut index = 0;
    for tool in tools {
        index += 1;
        lines.push(format!("({index}) {}", tool.describe()));
    }
    lines.push(format!(
        "({}) {FINISH}, whose description is <desc>{}</desc>. It takes arguments {{}}.",
        index + 1,
        finish_description(&outputs)
    ));
    lines.push(
        "When providing `next_tool_args`, the value inside the field must be in JSON format".into(),
    );
    let mut tool_names: Vec<String> = tools.iter().map(|t| t.name.clone()).collect();
    tool_names.push(FINISH.into());

    let mut react =
        SignatureSpec::new(format!("{}ReAct", spec.name)).instructions(lines.join("\n"));
    let mut extract =
        SignatureSpec::new(format!("{}Extract", spec.name)).instructions(instructions);
    for field in &spec.inputs {
        react = react.input_field(field.clone());
        extract = extract.input_field(field.clone());
    }
    react = react
        .input("trajectory", FieldType::String)
        .output("next_thought", FieldType::String)
        .output("next_tool_name", FieldType::Literal(tool_names))
        .output("next_tool_args", FieldType::map(FieldType::Any));
    extract = extract.input("trajectory", FieldType::String);
    for field in &spec.outputs {
        extract = extract.output_field(field.clone());
    }
    (react, extract)
}

impl<S: Signature> ReAct<S, NoTools> {
    /// An agent with `tools` (and DSPy's `finish`), at most 20 steps.
    pub fn with_tools(dspex: &Dspex, tools: Vec<Tool>) -> Self {
        Self::build(dspex, tools, 20)
    }
}

impl<S: Signature, T: Toolset> ReAct<S, T> {
    /// An agent with the tools of `T`.
    pub fn new(dspex: &Dspex) -> Self {
        Self::build(dspex, T::tools(), T::max_iters())
    }

    fn build(dspex: &Dspex, tools: Vec<Tool>, max_iters: usize) -> Self {
        let (react, extract) = signatures(S::spec(), &tools);
        ReAct {
            react: Predictor::new(dspex, PredictorKind::Predict, react, None),
            extract: Predictor::new(dspex, PredictorKind::ChainOfThought, extract, None),
            tools: Arc::new(tools),
            max_iters,
            _types: PhantomData,
        }
    }

    /// At most `n` steps before the agent must answer.
    pub fn max_iters(mut self, n: usize) -> Self {
        self.max_iters = n;
        self
    }

    /// Runs the agent: steps until it calls `finish` (or `max_iters`), then the answer.
    pub async fn call(&self, input: S::Input) -> Result<Acted<S::Output>> {
        let inputs = input.to_inputs();
        let options = CallOptions::default();
        let mut trajectory: Vec<Step> = Vec::new();
        for _ in 0..self.max_iters {
            let mut step_inputs = inputs.clone();
            step_inputs.insert("trajectory".into(), format_trajectory(&trajectory).into());
            let prediction = match self.react.run(step_inputs, &options).await {
                Ok(prediction) => prediction,
                // DSPy ends the trajectory when the model picks no valid tool.
                Err(Error::Bridge(BridgeError::ParseFailed { .. })) => break,
                Err(other) => return Err(other),
            };
            let mut outputs = prediction.outputs;
            let thought = match outputs.shift_remove("next_thought") {
                Some(Value::String(s)) => s,
                other => other.map(|v| format!("{v:?}")).unwrap_or_default(),
            };
            let tool = match outputs.shift_remove("next_tool_name") {
                Some(Value::String(s)) => s,
                other => other.map(|v| format!("{v:?}")).unwrap_or_default(),
            };
            let args = outputs
                .shift_remove("next_tool_args")
                .unwrap_or(Value::Map(Map::new()));
            let observation = if tool == FINISH {
                "Completed.".to_owned()
            } else {
                match self.tools.iter().find(|t| t.name == tool) {
                    None => format!("Execution error in {tool}: no tool named {tool:?}"),
                    Some(found) => {
                        let arguments = match &args {
                            Value::Map(m) => m.clone(),
                            _ => Map::new(),
                        };
                        match (found.run)(arguments).await {
                            Ok(value) => observation_text(&value),
                            Err(e) => format!("Execution error in {tool}: {e}"),
                        }
                    }
                }
            };
            let done = tool == FINISH;
            trajectory.push(Step {
                thought,
                tool,
                args,
                observation,
            });
            if done {
                break;
            }
        }
        let mut extract_inputs = inputs;
        extract_inputs.insert("trajectory".into(), format_trajectory(&trajectory).into());
        let mut prediction = self.extract.run(extract_inputs, &options).await?;
        let reasoning = match prediction.outputs.shift_remove("reasoning") {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        Ok(Acted {
            trajectory,
            reasoning,
            output: decode::<S>(prediction)?,
        })
    }

    /// The tools, `finish` aside.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }
}

impl<S: Signature, T: Toolset> Program for ReAct<S, T> {
    fn __build(dspex: &Dspex) -> Self {
        Self::new(dspex)
    }

    fn __visit<'a>(&'a self, path: &str, visit: &mut dyn FnMut(&str, &'a Predictor)) {
        visit(&join_path(path, "react"), &self.react);
        visit(&join_path(path, "extract"), &self.extract);
    }

    fn __map(&self, path: &str, map: &mut dyn FnMut(&str, &Predictor) -> Predictor) -> Self {
        ReAct {
            react: map(&join_path(path, "react"), &self.react),
            extract: map(&join_path(path, "extract"), &self.extract),
            ..self.clone()
        }
    }
}

impl<S: Signature, T: Toolset> Module for ReAct<S, T> {
    type Input = S::Input;
    type Output = S::Output;

    async fn forward(&self, input: S::Input) -> Result<S::Output> {
        Ok(self.call(input).await?.output)
    }
}

/// ChatAdapter's rendering of the trajectory (`format_user_message_content` of a signature whose
/// inputs are the trajectory's keys).
fn format_trajectory(steps: &[Step]) -> String {
    let mut parts = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        parts.push(format!("[[ ## thought_{i} ## ]]\n{}", step.thought));
        parts.push(format!("[[ ## tool_name_{i} ## ]]\n{}", step.tool));
        parts.push(format!(
            "[[ ## tool_args_{i} ## ]]\n{}",
            python_json(&step.args)
        ));
        parts.push(format!("[[ ## observation_{i} ## ]]\n{}", step.observation));
    }
    parts.join("\n\n").trim().to_owned()
}

/// How DSPy shows a tool's result: text as it is, containers as JSON, scalars as Python prints
/// them.
fn observation_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::List(_) | Value::Map(_) => python_json(value),
        other => python_scalar(other),
    }
}

fn python_scalar(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.fract() == 0.0 && f.is_finite() => format!("{f:.1}"),
        Value::Float(f) => f.to_string(),
        Value::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// Python's `json.dumps(value, ensure_ascii=False)`.
fn python_json(value: &Value) -> String {
    let mut out = String::new();
    write_json(value, &mut out, false);
    out
}

/// Python's `repr` of a JSON-like value (how DSPy prints a tool's arguments).
fn python_repr(value: &Value) -> String {
    let mut out = String::new();
    write_json(value, &mut out, true);
    out
}

fn write_json(value: &Value, out: &mut String, repr: bool) {
    let string = |s: &str, out: &mut String| {
        if repr {
            let quote = if s.contains('\'') && !s.contains('"') {
                '"'
            } else {
                '\''
            };
            out.push(quote);
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    c if c == quote => {
                        out.push('\\');
                        out.push(c);
                    }
                    c => out.push(c),
                }
            }
            out.push(quote);
        } else {
            out.push_str(&serde_json::Value::String(s.to_owned()).to_string());
        }
    };
    match value {
        Value::Null => out.push_str(if repr { "None" } else { "null" }),
        Value::Bool(b) => out.push_str(match (b, repr) {
            (true, true) => "True",
            (false, true) => "False",
            (true, false) => "true",
            (false, false) => "false",
        }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(_) => out.push_str(&python_scalar(value)),
        Value::String(s) => string(s, out),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json(item, out, repr);
            }
            out.push(']');
        }
        Value::Map(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                string(k, out);
                out.push_str(": ");
                write_json(v, out, repr);
            }
            out.push('}');
        }
        other => {
            let _ = write!(out, "{other:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_as_python_prints_them() {
        let value = Value::from(serde_json::json!({"a": [1, 2.5, "x'y"], "b": true, "c": null}));
        assert_eq!(
            python_json(&value),
            r#"{"a": [1, 2.5, "x'y"], "b": true, "c": null}"#
        );
        assert_eq!(
            python_repr(&value),
            r#"{'a': [1, 2.5, "x'y"], 'b': True, 'c': None}"#
        );
        assert_eq!(observation_text(&Value::Float(2.0)), "2.0");
        assert_eq!(observation_text(&Value::from("text")), "text");
    }

    #[test]
    fn an_empty_trajectory_is_empty_and_steps_are_sections() {
        assert_eq!(format_trajectory(&[]), "");
        let step = Step {
            thought: "t".into(),
            tool: "search".into(),
            args: Value::from(serde_json::json!({"q": "x"})),
            observation: "found".into(),
        };
        assert_eq!(
            format_trajectory(&[step]),
            "[[ ## thought_0 ## ]]\nt\n\n[[ ## tool_name_0 ## ]]\nsearch\n\n[[ ## tool_args_0 ## ]]\n{\"q\": \"x\"}\n\n[[ ## observation_0 ## ]]\nfound"
        );
    }
}
