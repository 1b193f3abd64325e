//! Signatures described in Rust: field types, fields, and the spec a worker builds a
//! `dspy.Signature` from.

use crate::proto as pb;
use crate::value::{Map, Value};

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
