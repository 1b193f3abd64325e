//! Typed session variables: registered with a type and constraints, validated by the worker on
//! every set, and watchable as a stream of changes.

use futures_util::stream::{BoxStream, StreamExt};

use crate::api::sessions::Session;
use crate::convert::value_from_proto;
use crate::error::{BridgeError, Result};
use crate::proto::{self as pb, variable_response, variable_update};
use crate::value::Value;

/// The type of a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VariableType {
    /// A float, with optional `min`/`max`.
    Float,
    /// An integer, with optional `min`/`max`.
    Integer,
    /// A string, with optional length bounds.
    String,
    /// A boolean.
    Boolean,
    /// A string out of `choices`.
    Choice,
    /// A list of floats, of `dimensions` length when set.
    Embedding,
    /// A tensor, of `shape` when set.
    Tensor,
}

impl VariableType {
    fn to_proto(self) -> pb::VariableType {
        match self {
            VariableType::Float => pb::VariableType::Float,
            VariableType::Integer => pb::VariableType::Integer,
            VariableType::String => pb::VariableType::String,
            VariableType::Boolean => pb::VariableType::Boolean,
            VariableType::Choice => pb::VariableType::Choice,
            VariableType::Embedding => pb::VariableType::Embedding,
            VariableType::Tensor => pb::VariableType::Tensor,
        }
    }

    fn from_proto(value: i32) -> Result<Self> {
        Ok(match pb::VariableType::try_from(value) {
            Ok(pb::VariableType::Float) => VariableType::Float,
            Ok(pb::VariableType::Integer) => VariableType::Integer,
            Ok(pb::VariableType::String) => VariableType::String,
            Ok(pb::VariableType::Boolean) => VariableType::Boolean,
            Ok(pb::VariableType::Choice) => VariableType::Choice,
            Ok(pb::VariableType::Embedding) => VariableType::Embedding,
            Ok(pb::VariableType::Tensor) => VariableType::Tensor,
            _ => {
                return Err(BridgeError::Protocol(format!(
                    "unknown variable type {value}"
                )));
            }
        })
    }
}

/// Limits on a variable's values; unset fields do not constrain.
///
/// ```
/// use snakepit_grpc_bridge::api::variables::Constraints;
/// let c = Constraints::default().min(0.0).max(2.0);
/// assert_eq!((c.min, c.max), (Some(0.0), Some(2.0)));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Constraints {
    /// Inclusive lower bound of a float or integer.
    pub min: Option<f64>,
    /// Inclusive upper bound of a float or integer.
    pub max: Option<f64>,
    /// The allowed values of a choice.
    pub choices: Vec<String>,
    /// Minimum length of a string, in characters.
    pub min_length: Option<u32>,
    /// Maximum length of a string, in characters.
    pub max_length: Option<u32>,
    /// Required length of an embedding.
    pub dimensions: Option<u32>,
    /// Required shape of a tensor.
    pub shape: Vec<u64>,
}

impl Constraints {
    /// Sets the lower bound.
    pub fn min(mut self, min: f64) -> Self {
        self.min = Some(min);
        self
    }
    /// Sets the upper bound.
    pub fn max(mut self, max: f64) -> Self {
        self.max = Some(max);
        self
    }
    /// Sets the allowed choices.
    pub fn choices<I: IntoIterator<Item = S>, S: Into<String>>(mut self, choices: I) -> Self {
        self.choices = choices.into_iter().map(Into::into).collect();
        self
    }
    /// Sets the length bounds of a string.
    pub fn length(mut self, min: u32, max: u32) -> Self {
        self.min_length = Some(min);
        self.max_length = Some(max);
        self
    }
    /// Sets the length of an embedding.
    pub fn dimensions(mut self, dimensions: u32) -> Self {
        self.dimensions = Some(dimensions);
        self
    }
    /// Sets the shape of a tensor.
    pub fn shape(mut self, shape: Vec<u64>) -> Self {
        self.shape = shape;
        self
    }

    fn to_proto(&self) -> pb::Constraints {
        pb::Constraints {
            min: self.min,
            max: self.max,
            choices: self.choices.clone(),
            min_length: self.min_length,
            max_length: self.max_length,
            dimensions: self.dimensions,
            shape: self.shape.clone(),
        }
    }

    fn from_proto(c: pb::Constraints) -> Self {
        Constraints {
            min: c.min,
            max: c.max,
            choices: c.choices,
            min_length: c.min_length,
            max_length: c.max_length,
            dimensions: c.dimensions,
            shape: c.shape,
        }
    }
}

/// A variable's current state.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Variable {
    /// Its name.
    pub name: String,
    /// Its type.
    pub variable_type: VariableType,
    /// Its value.
    pub value: Value,
    /// Its constraints.
    pub constraints: Constraints,
    /// 1 at registration, +1 for every successful set.
    pub version: u64,
    /// Its description.
    pub description: String,
}

impl TryFrom<pb::Variable> for Variable {
    type Error = BridgeError;

    fn try_from(v: pb::Variable) -> Result<Self> {
        Ok(Variable {
            variable_type: VariableType::from_proto(v.r#type)?,
            value: value_from_proto(v.value)?,
            constraints: Constraints::from_proto(v.constraints.unwrap_or_default()),
            name: v.name,
            version: v.version,
            description: v.description,
        })
    }
}

fn variable_result(response: pb::VariableResponse) -> Result<Variable> {
    match response.result {
        Some(variable_response::Result::Variable(v)) => Variable::try_from(v),
        Some(variable_response::Result::Error(e)) => Err(e.into()),
        None => Err(BridgeError::Protocol("an empty variable response".into())),
    }
}

/// Changes of watched variables, in order.
pub type VariableWatch = BoxStream<'static, Result<Variable>>;

impl Session {
    /// Registers a variable; the initial value must satisfy the type and constraints.
    pub async fn register_variable(
        &self,
        name: &str,
        variable_type: VariableType,
        initial: impl Into<Value>,
        constraints: Constraints,
    ) -> Result<Variable> {
        let request = pb::RegisterVariableRequest {
            session_id: self.id.clone(),
            name: name.to_owned(),
            r#type: variable_type.to_proto() as i32,
            initial_value: Some((&initial.into()).into()),
            constraints: Some(constraints.to_proto()),
            description: String::new(),
        };
        let response = self
            .bridge
            .call(Some(&self.id), |mut c| async move {
                c.register_variable(request).await
            })
            .await?;
        variable_result(response.into_inner())
    }

    /// A variable's current state.
    pub async fn get_variable(&self, name: &str) -> Result<Variable> {
        let request = pb::GetVariableRequest {
            session_id: self.id.clone(),
            name: name.to_owned(),
        };
        let response = self
            .bridge
            .call(Some(&self.id), |mut c| async move {
                c.get_variable(request).await
            })
            .await?;
        variable_result(response.into_inner())
    }

    /// Sets a variable. A value that breaks its type or constraints is
    /// [`BridgeError::ConstraintViolation`] and leaves the variable unchanged.
    pub async fn set_variable(&self, name: &str, value: impl Into<Value>) -> Result<Variable> {
        let request = pb::SetVariableRequest {
            session_id: self.id.clone(),
            name: name.to_owned(),
            value: Some((&value.into()).into()),
        };
        let response = self
            .bridge
            .call(Some(&self.id), |mut c| async move {
                c.set_variable(request).await
            })
            .await?;
        variable_result(response.into_inner())
    }

    /// All variables of the session, by name.
    pub async fn list_variables(&self) -> Result<Vec<Variable>> {
        let request = pb::ListVariablesRequest {
            session_id: self.id.clone(),
        };
        let response = self
            .bridge
            .call(Some(&self.id), |mut c| async move {
                c.list_variables(request).await
            })
            .await?
            .into_inner();
        if let Some(error) = response.error {
            return Err(error.into());
        }
        response
            .variables
            .into_iter()
            .map(Variable::try_from)
            .collect()
    }

    /// Watches variables (all of them when `names` is empty): the stream yields each variable's
    /// state after every successful set, from the moment this returns, until the session ends.
    /// With `include_initial`, the current states come first.
    pub async fn watch_variables(
        &self,
        names: &[&str],
        include_initial: bool,
    ) -> Result<VariableWatch> {
        let request = pb::WatchVariablesRequest {
            session_id: self.id.clone(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            include_initial,
        };
        let mut client = self.bridge.connection(&self.id).await?.client;
        let streaming = client
            .watch_variables(request)
            .await
            .map_err(|status| BridgeError::Protocol(format!("cannot watch: {status}")))?
            .into_inner();
        Ok(streaming
            .map(|update| match update {
                Ok(pb::VariableUpdate {
                    kind: Some(variable_update::Kind::Variable(v)),
                }) => Variable::try_from(v),
                Ok(pb::VariableUpdate {
                    kind: Some(variable_update::Kind::Error(e)),
                }) => Err(e.into()),
                Ok(pb::VariableUpdate { kind: None }) => {
                    Err(BridgeError::Protocol("an empty variable update".into()))
                }
                Err(status) => Err(BridgeError::Protocol(format!("the watch failed: {status}"))),
            })
            .boxed())
    }
}
