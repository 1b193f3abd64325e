//! Signatures described in Rust: fields, and the spec a worker builds a `dspy.Signature` from.
//!
//! A spec crosses to a worker once: calls name it by the SHA-256 of its encoded definition,
//! computed on first use and kept with the spec (a typed `dspex` signature's spec is a static, so
//! once per process). A worker that does not hold the hash answers "unknown definition", and the
//! call is sent again with the definition (see `Bridge::run_module`).

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha256};

use super::FieldType;
use crate::proto as pb;

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

    fn to_proto(
        &self,
        objects: &mut Vec<pb::ObjectDef>,
        seen: &mut BTreeSet<String>,
    ) -> pb::FieldSpec {
        pb::FieldSpec {
            name: self.name.clone(),
            description: self.description.clone(),
            prefix: self.prefix.clone(),
            r#type: Some(self.field_type.to_type_ref(objects, seen)),
        }
    }
}

/// A signature's wire definition and its hash, made once per spec.
#[derive(Debug)]
pub(crate) struct Registered {
    /// SHA-256 of the encoded definition.
    pub(crate) hash: [u8; 32],
    /// The definition, sent when a worker does not hold the hash.
    pub(crate) definition: pb::SignatureSpec,
}

/// The registration a spec keeps of itself; not part of its identity (equality ignores it).
#[derive(Debug, Clone, Default)]
struct RegistrationCell(OnceLock<Arc<Registered>>);

impl PartialEq for RegistrationCell {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for RegistrationCell {}

/// A DSPy signature described in Rust. A worker builds its `dspy.Signature` once and keeps it
/// under the spec's hash; calls then send the hash alone.
///
/// The hash is computed when the spec is first used in a call and kept with it: change the fields
/// before that, or build a new spec (the builder methods start afresh), not after.
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
    registration: RegistrationCell,
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
        self.registration = RegistrationCell::default();
        self
    }

    /// Adds an input field.
    pub fn input(self, name: impl Into<String>, field_type: FieldType) -> Self {
        self.input_field(FieldSpec::new(name, field_type))
    }

    /// Adds an input field with description or prefix.
    pub fn input_field(mut self, field: FieldSpec) -> Self {
        self.inputs.push(field);
        self.registration = RegistrationCell::default();
        self
    }

    /// Adds an output field.
    pub fn output(self, name: impl Into<String>, field_type: FieldType) -> Self {
        self.output_field(FieldSpec::new(name, field_type))
    }

    /// Adds an output field with description or prefix.
    pub fn output_field(mut self, field: FieldSpec) -> Self {
        self.outputs.push(field);
        self.registration = RegistrationCell::default();
        self
    }

    /// The SHA-256 of the spec's wire definition, as lowercase hex: what names it to a worker.
    /// Two specs that differ in anything the LM sees (a description, an instruction, a type) have
    /// different hashes.
    pub fn hash_hex(&self) -> String {
        self.registered()
            .hash
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The wire definition and its hash, made on first use.
    /// The SHA-256 that names this signature on the wire and its encoded definition (a
    /// `SignatureSpec` message): for Python code of the bridge that takes signatures as values
    /// (an optimiser's run of a Rust program builds its predictors from them).
    pub fn definition_bytes(&self) -> (Vec<u8>, Vec<u8>) {
        use prost::Message;
        let registered = self.registered();
        (
            registered.hash.to_vec(),
            registered.definition.encode_to_vec(),
        )
    }

    pub(crate) fn registered(&self) -> Arc<Registered> {
        let registered = self
            .registration
            .0
            .get_or_init(|| Arc::new(self.register()))
            .clone();
        debug_assert_eq!(
            registered.definition,
            self.to_proto(),
            "the fields of a SignatureSpec changed after it was used in a call; build a new spec instead"
        );
        registered
    }

    fn register(&self) -> Registered {
        let definition = self.to_proto();
        let hash = Sha256::digest(prost::Message::encode_to_vec(&definition)).into();
        Registered { hash, definition }
    }

    pub(crate) fn to_proto(&self) -> pb::SignatureSpec {
        let mut objects = Vec::new();
        let mut seen = BTreeSet::new();
        let inputs = self
            .inputs
            .iter()
            .map(|f| f.to_proto(&mut objects, &mut seen))
            .collect();
        let outputs = self
            .outputs
            .iter()
            .map(|f| f.to_proto(&mut objects, &mut seen))
            .collect();
        pb::SignatureSpec {
            name: self.name.clone(),
            instructions: self.instructions.clone(),
            inputs,
            outputs,
            objects,
        }
    }
}
