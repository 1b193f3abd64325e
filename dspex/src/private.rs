//! What generated code calls. Not public API: names here change without notice.

pub use serde;
pub use snakepit_grpc_bridge::api::dspy::{
    FieldSpec, FieldType, ObjectField, ObjectType, SignatureSpec,
};
pub use snakepit_grpc_bridge::{Map, Value};
pub use std::sync::OnceLock;

pub use crate::program::join_path;

pub use crate::types::{expect_map, expect_variant, take_field};

/// Fails to compile, once, at a signature field whose type is not a [`DspyType`](crate::DspyType).
/// (The generated impls are bounded by `where for<'dspex> Ty: DspyType`, a bound that is not
/// checked where it is written: with a bad field type they do not exist, instead of each failing.)
pub fn assert_dspy_type<T: crate::DspyType>() {}

/// Fails to compile, once, at a `#[dspy_module]` field whose type is not a program.
pub fn assert_program<T: crate::Program>() {}

use snakepit_grpc_bridge::api::dspy::CallOptions;

use crate::dspex::Dspex;
use crate::error::Result;
use crate::modules::{Reasoned, decode, decode_reasoned};
use crate::signature::{Signature, SignatureInput};

/// `S::predict(&dspex, input)`.
pub async fn predict<S: Signature>(dspex: &Dspex, input: S::Input) -> Result<S::Output> {
    let prediction = dspex
        .bridge
        .run_module(
            "dspy.Predict",
            S::spec(),
            Map::new(),
            input.to_inputs(),
            &CallOptions::default(),
        )
        .await?;
    decode::<S>(prediction)
}

/// `S::chain_of_thought(&dspex, input)`.
pub async fn chain_of_thought<S: Signature>(
    dspex: &Dspex,
    input: S::Input,
) -> Result<Reasoned<S::Output>> {
    let prediction = dspex
        .bridge
        .run_module(
            "dspy.ChainOfThought",
            S::spec(),
            Map::new(),
            input.to_inputs(),
            &CallOptions::default(),
        )
        .await?;
    decode_reasoned::<S>(prediction)
}

pub use crate::object::{
    ObjectModule, call_method, call_method_for, call_method_unit, create_object,
};
pub use crate::signature::SignatureOutput;
