//! The [`Signature`] trait that `#[dspy_signature]` implements.

use snakepit_grpc_bridge::Map;
use snakepit_grpc_bridge::api::dspy::{FieldType, SignatureSpec};

use crate::error::DecodeError;

/// A typed DSPy signature: its spec (computed once) and its input and output types.
///
/// Implemented by `#[dspy_signature]`; see the [crate documentation](crate).
pub trait Signature: Send + Sync + 'static {
    /// The input fields, as a struct (`QAInput` for `QA`).
    type Input: SignatureInput;
    /// The output fields, as a struct (`QAOutput` for `QA`).
    type Output: SignatureOutput;
    /// The signature's name, instructions and typed fields.
    fn spec() -> &'static SignatureSpec;
}

/// The input struct of a signature: becomes DSPy's keyword inputs.
pub trait SignatureInput: Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static {
    /// The inputs as a map of field name to value.
    fn to_inputs(&self) -> Map;
    /// Reads the inputs back from such a map (fields it does not declare are ignored).
    fn from_inputs(inputs: Map) -> Result<Self, DecodeError>;
    /// Each field's name and DSPy type, in order (what a CSV cell is read as).
    fn field_types() -> Vec<(&'static str, FieldType)>;
}

/// The output struct of a signature: read from DSPy's prediction.
pub trait SignatureOutput:
    Sized + Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static
{
    /// Decodes the prediction's fields (fields it does not declare are ignored).
    fn from_outputs(outputs: Map) -> Result<Self, DecodeError>;
    /// The outputs as a map of field name to value (what a DSPy prediction of them holds).
    fn to_outputs(&self) -> Map;
    /// Each field's name and DSPy type, in order.
    fn field_types() -> Vec<(&'static str, FieldType)>;
}
