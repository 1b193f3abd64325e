//! The mapping of field types: Rust → wire → Python. `python/snakepit_bridge/field_types.py` is the
//! other half, with the same table.
//!
//! | Rust (a `dspex` field)                          | [`FieldType`]            | wire (`TypeRef`)         | Python              |
//! |-------------------------------------------------|--------------------------|--------------------------|---------------------|
//! | `String`                                        | `String`                 | `scalar: STRING`         | `str`               |
//! | `i8`–`i64`, `isize`, `u8`–`u32`                 | `Integer`                | `scalar: INT`            | `int`               |
//! | `f32`, `f64`                                    | `Float`                  | `scalar: FLOAT`          | `float`             |
//! | `bool`                                          | `Boolean`                | `scalar: BOOL`           | `bool`              |
//! | `Vec<T>`                                        | `List(T)`                | `list: T`                | `list[T]`           |
//! | `HashMap<String, T>`, `BTreeMap<String, T>`     | `Map(T)`                 | `map: T`                 | `dict[str, T]`      |
//! | `Option<T>`                                     | `Optional(T)`            | `optional: T`            | `Optional[T]`       |
//! | a `#[dspy_type]` enum without data              | `Literal(variants)`      | `literal: [...]`         | `Literal[...]`      |
//! | a `#[dspy_type]` struct                         | `Object(ObjectType)`     | `object: name` + `ObjectDef` once per signature | a pydantic model |
//! | (untyped: ReAct's tool arguments)               | `Any`                    | `scalar: ANY`            | `typing.Any`        |

use std::collections::BTreeSet;

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
    /// `typing.Any`: any value (untyped signatures such as ReAct's tool arguments).
    Any,
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

    /// The type as JSON Schema (a [`Value`] map), for tools that want one. Workers receive the typed
    /// wire form instead (`TypeRef`), not this.
    pub fn json_schema(&self) -> Value {
        let kind = |t: &str| schema(vec![("type", Value::from(t))]);
        match self {
            FieldType::String => kind("string"),
            FieldType::Integer => kind("integer"),
            FieldType::Float => kind("number"),
            FieldType::Boolean => kind("boolean"),
            FieldType::Any => schema(Vec::new()),
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

impl FieldType {
    /// The wire type; every object type it uses (nested ones too) is added to `objects` once.
    pub(crate) fn to_type_ref(
        &self,
        objects: &mut Vec<pb::ObjectDef>,
        seen: &mut BTreeSet<String>,
    ) -> pb::TypeRef {
        use pb::type_ref::Kind;
        let boxed =
            |t: &FieldType, objects: &mut Vec<pb::ObjectDef>, seen: &mut BTreeSet<String>| {
                Box::new(t.to_type_ref(objects, seen))
            };
        let kind = match self {
            FieldType::String => Kind::Scalar(pb::ScalarType::String as i32),
            FieldType::Integer => Kind::Scalar(pb::ScalarType::Int as i32),
            FieldType::Float => Kind::Scalar(pb::ScalarType::Float as i32),
            FieldType::Boolean => Kind::Scalar(pb::ScalarType::Bool as i32),
            FieldType::Any => Kind::Scalar(pb::ScalarType::Any as i32),
            FieldType::List(inner) => Kind::List(boxed(inner, objects, seen)),
            FieldType::Map(inner) => Kind::Map(boxed(inner, objects, seen)),
            FieldType::Optional(inner) => Kind::Optional(boxed(inner, objects, seen)),
            FieldType::Literal(values) => Kind::Literal(pb::LiteralType {
                values: values.clone(),
            }),
            FieldType::Object(object) => {
                if seen.insert(object.name.clone()) {
                    let fields = object
                        .fields
                        .iter()
                        .map(|field| pb::ObjectFieldDef {
                            name: field.name.clone(),
                            r#type: Some(field.field_type.to_type_ref(objects, seen)),
                            description: field.description.clone().unwrap_or_default(),
                        })
                        .collect();
                    objects.push(pb::ObjectDef {
                        name: object.name.clone(),
                        fields,
                    });
                }
                Kind::Object(object.name.clone())
            }
        };
        pb::TypeRef { kind: Some(kind) }
    }
}
