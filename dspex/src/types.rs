//! [`DspyType`]: Rust types that have a DSPy field type and cross the bridge as typed values.

use std::collections::{BTreeMap, HashMap};

use snakepit_grpc_bridge::api::dspy::FieldType;
use snakepit_grpc_bridge::{Map, Value};

use crate::error::DecodeError;

/// A Rust type usable as a DSPy field: it names its DSPy type and converts to and from the
/// bridge's typed values. A field type is also `Debug`, `Clone`, `PartialEq` and serde
/// (`Serialize` and `DeserializeOwned`), like the input and output structs made of it. Implemented for `String`, `bool`, `f32`, `f64`, the integer types that
/// fit 64-bit signed integers exactly (`i8`–`i64`, `isize`, `u8`–`u32`), `Vec<T>`, `Option<T>`,
/// `HashMap<String, T>`, `BTreeMap<String, T>`, and every `#[dspy_type]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a DSPy field",
    label = "no DSPy type for `{Self}`",
    note = "if `{Self}` is your own struct or enum, put #[dspy_type] on it (it also derives the Debug, Clone, PartialEq and serde impls a field type needs)",
    note = "fields may be String, bool, f32, f64, i8–i64, isize, u8–u32, Vec<T>, Option<T>, HashMap<String, T>, BTreeMap<String, T>, or a #[dspy_type]"
)]
pub trait DspyType:
    Sized + std::fmt::Debug + Clone + PartialEq + serde::Serialize + serde::de::DeserializeOwned
{
    /// The DSPy (Python) type of the field.
    fn field_type() -> FieldType;
    /// The value that crosses the bridge.
    fn to_value(&self) -> Value;
    /// Reads the value back, strictly: an integer field never accepts a float.
    fn from_value(value: Value) -> Result<Self, DecodeError>;
}

fn found(value: &Value) -> String {
    match value {
        Value::String(s) if s.chars().count() > 60 => {
            format!("string {:?}…", s.chars().take(60).collect::<String>())
        }
        Value::String(s) => format!("string {s:?}"),
        Value::Int(i) => format!("integer {i}"),
        Value::Float(f) => format!("float {f}"),
        Value::Bool(b) => format!("bool {b}"),
        other => other.kind().to_owned(),
    }
}

impl DspyType for String {
    fn field_type() -> FieldType {
        FieldType::String
    }
    fn to_value(&self) -> Value {
        Value::String(self.clone())
    }
    fn from_value(value: Value) -> Result<Self, DecodeError> {
        match value {
            Value::String(s) => Ok(s),
            other => Err(DecodeError::new("a string", found(&other))),
        }
    }
}

impl DspyType for bool {
    fn field_type() -> FieldType {
        FieldType::Boolean
    }
    fn to_value(&self) -> Value {
        Value::Bool(*self)
    }
    fn from_value(value: Value) -> Result<Self, DecodeError> {
        match value {
            Value::Bool(b) => Ok(b),
            other => Err(DecodeError::new("a bool", found(&other))),
        }
    }
}

impl DspyType for f64 {
    fn field_type() -> FieldType {
        FieldType::Float
    }
    fn to_value(&self) -> Value {
        Value::Float(*self)
    }
    fn from_value(value: Value) -> Result<Self, DecodeError> {
        match value {
            Value::Float(f) => Ok(f),
            Value::Int(i) => Ok(i as f64),
            other => Err(DecodeError::new("a number", found(&other))),
        }
    }
}

impl DspyType for f32 {
    fn field_type() -> FieldType {
        FieldType::Float
    }
    fn to_value(&self) -> Value {
        Value::Float(f64::from(*self))
    }
    fn from_value(value: Value) -> Result<Self, DecodeError> {
        f64::from_value(value).map(|f| f as f32)
    }
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl DspyType for $t {
            fn field_type() -> FieldType {
                FieldType::Integer
            }
            fn to_value(&self) -> Value {
                Value::Int(*self as i64)
            }
            fn from_value(value: Value) -> Result<Self, DecodeError> {
                match value {
                    Value::Int(i) => <$t>::try_from(i).map_err(|_| {
                        DecodeError::new(concat!("an integer that fits ", stringify!($t)), format!("{i}"))
                    }),
                    other => Err(DecodeError::new("an integer", found(&other))),
                }
            }
        }
    )*};
}
integers!(i8, i16, i32, i64, isize, u8, u16, u32);

impl<T: DspyType> DspyType for Vec<T> {
    fn field_type() -> FieldType {
        FieldType::list(T::field_type())
    }
    fn to_value(&self) -> Value {
        Value::List(self.iter().map(T::to_value).collect())
    }
    fn from_value(value: Value) -> Result<Self, DecodeError> {
        match value {
            Value::List(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| T::from_value(item).map_err(|e| e.in_item(i)))
                .collect(),
            other => Err(DecodeError::new("a list", found(&other))),
        }
    }
}

impl<T: DspyType> DspyType for Option<T> {
    fn field_type() -> FieldType {
        FieldType::optional(T::field_type())
    }
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, T::to_value)
    }
    fn from_value(value: Value) -> Result<Self, DecodeError> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

fn map_entries<T: DspyType>(value: Value) -> Result<Vec<(String, T)>, DecodeError> {
    match value {
        Value::Map(map) => map
            .into_iter()
            .map(|(k, v)| {
                let decoded = T::from_value(v).map_err(|e| e.in_field(&k))?;
                Ok((k, decoded))
            })
            .collect(),
        other => Err(DecodeError::new("a map", found(&other))),
    }
}

impl<T: DspyType, S: std::hash::BuildHasher + Default + Clone> DspyType for HashMap<String, T, S> {
    fn field_type() -> FieldType {
        FieldType::map(T::field_type())
    }
    fn to_value(&self) -> Value {
        let mut keys: Vec<_> = self.keys().collect();
        keys.sort();
        Value::Map(
            keys.into_iter()
                .map(|k| (k.clone(), self[k].to_value()))
                .collect(),
        )
    }
    fn from_value(value: Value) -> Result<Self, DecodeError> {
        Ok(map_entries(value)?.into_iter().collect())
    }
}

impl<T: DspyType> DspyType for BTreeMap<String, T> {
    fn field_type() -> FieldType {
        FieldType::map(T::field_type())
    }
    fn to_value(&self) -> Value {
        Value::Map(
            self.iter()
                .map(|(k, v)| (k.clone(), v.to_value()))
                .collect(),
        )
    }
    fn from_value(value: Value) -> Result<Self, DecodeError> {
        Ok(map_entries(value)?.into_iter().collect())
    }
}

/// Takes field `name` out of a map of outputs, decoding it (a missing field reads as null, so
/// only `Option` fields may be missing).
pub fn take_field<T: DspyType>(map: &mut Map, name: &str) -> Result<T, DecodeError> {
    let value = map.shift_remove(name).unwrap_or(Value::Null);
    T::from_value(value).map_err(|e| e.in_field(name))
}

/// Reads a `#[dspy_type]` struct's map.
pub fn expect_map(value: Value, type_name: &str) -> Result<Map, DecodeError> {
    match value {
        Value::Map(map) => Ok(map),
        other => Err(DecodeError::new(
            format!("a {type_name} object"),
            found(&other),
        )),
    }
}

/// Reads a `#[dspy_type]` enum's variant name.
pub fn expect_variant(
    value: Value,
    type_name: &str,
    variants: &[&str],
) -> Result<String, DecodeError> {
    match value {
        Value::String(s) if variants.contains(&s.as_str()) => Ok(s),
        other => Err(DecodeError::new(
            format!("one of {type_name}'s variants ({})", variants.join(", ")),
            found(&other),
        )),
    }
}
