//! What one DSPy call takes and gives: its options, its prediction, usage and history.

use std::time::Duration;

use crate::convert::value_from_proto;
use crate::error::{BridgeError, Result};
use crate::proto::{self as pb, call_response};
use crate::value::{Map, Value};

use super::Lm;

/// Options of one call.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CallOptions {
    /// Overrides the LM of the instance (or of the pool) for this call.
    pub lm: Option<Lm>,
    /// Returns the prompt messages and raw completions in [`Prediction::history`].
    pub history: bool,
    /// Not cut by the pool's request timeout (long work: an optimiser's run). The call still
    /// ends when the worker dies or the caller drops it.
    pub without_timeout: bool,
    /// This call's deadline, in place of the pool's request timeout: the whole call (waiting for
    /// a worker, every attempt and retry) ends with [`BridgeError::DeadlineExceeded`] when it
    /// passes; the call is cancelled in its worker and its slot freed at once.
    pub timeout: Option<Duration>,
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

    /// Lifts the pool's request timeout for this call.
    pub fn without_timeout(mut self) -> Self {
        self.without_timeout = true;
        self
    }

    /// Gives this call a deadline of its own, `after` from now, in place of the pool's request
    /// timeout (shorter or longer).
    ///
    /// ```
    /// use std::time::Duration;
    /// use snakepit_grpc_bridge::api::dspy::CallOptions;
    /// let options = CallOptions::default().timeout(Duration::from_millis(800));
    /// assert_eq!(options.timeout, Some(Duration::from_millis(800)));
    /// ```
    pub fn timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(after);
        self
    }

    /// Whether the pool's request timeout is lifted for this call's attempts (no timeout, or the
    /// call's own deadline).
    pub(crate) fn lifts_pool_timeout(&self) -> bool {
        self.without_timeout || self.timeout.is_some()
    }

    /// Runs `call` within this call's deadline, if it has one. Dropping `call` cancels it in
    /// its worker and gives its slot back.
    pub(crate) async fn within_deadline<T>(
        &self,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        match self.timeout {
            Some(after) => tokio::time::timeout(after, call)
                .await
                .unwrap_or(Err(BridgeError::DeadlineExceeded { after })),
            None => call.await,
        }
    }

    pub(crate) fn to_proto(&self) -> pb::CallOptions {
        pb::CallOptions {
            lm: self.lm.as_ref().map(Lm::to_proto),
            history: self.history,
            ..Default::default()
        }
    }
}

/// Tokens (and, where LiteLLM knows the model's prices, the cost) of LM requests. Usages add up:
/// `a + b`, `total += call`.
///
/// ```
/// # use snakepit_grpc_bridge::api::dspy::Usage;
/// let total: Usage = [Usage::default(), Usage::default()].into_iter().sum();
/// assert_eq!(total.lm_calls, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
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
    /// Their cost in USD, where LiteLLM knows the model's prices (else 0).
    pub cost: f64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
        self.lm_calls += other.lm_calls;
        self.cost += other.cost;
    }
}

impl std::ops::Add for Usage {
    type Output = Usage;

    fn add(mut self, other: Usage) -> Usage {
        self += other;
        self
    }
}

impl std::iter::Sum for Usage {
    fn sum<I: Iterator<Item = Usage>>(iter: I) -> Usage {
        iter.fold(Usage::default(), |total, usage| total + usage)
    }
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
    /// What the method returned: plain data, or an [`ObjectRef`](crate::ObjectRef) to an object kept in the session.
    pub value: Value,
    /// Tokens used by LM calls during the method.
    pub usage: Usage,
    /// Prompts and completions, when asked for.
    pub history: Vec<HistoryEntry>,
}

pub(super) fn call_result(response: pb::CallResponse) -> Result<CallResult> {
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
                cost: usage.cost,
            },
            history,
        }),
        Some(call_response::Result::Error(error)) => Err(error.into()),
        None => Err(BridgeError::Protocol("an empty call response".into())),
    }
}

pub(super) fn prediction(result: CallResult) -> Result<Prediction> {
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
