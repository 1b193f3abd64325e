//! Conversion between the wire's generated types and the bridge's own, in one place, so that no
//! generated type leaks into the public API.

use crate::error::{BridgeError, PythonError};
use crate::proto as pb;
use crate::value::{DType, Map, Tensor, Value};

impl From<&Value> for pb::Value {
    fn from(value: &Value) -> Self {
        use pb::value::Kind;
        let kind = match value {
            Value::Null => Kind::Null(pb::NullValue::NullValue as i32),
            Value::Bool(b) => Kind::Bool(*b),
            Value::Int(i) => Kind::Int(*i),
            Value::Float(f) => Kind::Float(*f),
            Value::String(s) => Kind::String(s.clone()),
            Value::Bytes(b) => Kind::Bytes(b.clone()),
            Value::List(items) => Kind::List(pb::ListValue {
                items: items.iter().map(Into::into).collect(),
            }),
            Value::Map(map) => Kind::Map(map_to_proto(map)),
            Value::Object(o) => Kind::Object(pb::ObjectRef {
                id: o.id.clone(),
                type_name: o.type_name.clone(),
            }),
            Value::Tensor(t) => Kind::Tensor(pb::Tensor {
                dtype: dtype_to_proto(t.dtype()) as i32,
                shape: t.shape().to_vec(),
                data: t.data().to_vec(),
            }),
        };
        pb::Value { kind: Some(kind) }
    }
}

pub(crate) fn map_to_proto(map: &Map) -> pb::MapValue {
    pb::MapValue {
        entries: map
            .iter()
            .map(|(key, value)| pb::MapEntry {
                key: key.clone(),
                value: Some(value.into()),
            })
            .collect(),
    }
}

fn dtype_to_proto(dtype: DType) -> pb::DType {
    match dtype {
        DType::F32 => pb::DType::DtypeFloat32,
        DType::F64 => pb::DType::DtypeFloat64,
        DType::I32 => pb::DType::DtypeInt32,
        DType::I64 => pb::DType::DtypeInt64,
        DType::U8 => pb::DType::DtypeUint8,
        DType::Bool => pb::DType::DtypeBool,
    }
}

impl TryFrom<pb::Value> for Value {
    type Error = BridgeError;

    fn try_from(value: pb::Value) -> Result<Self, BridgeError> {
        use pb::value::Kind;
        Ok(match value.kind {
            None | Some(Kind::Null(_)) => Value::Null,
            Some(Kind::Bool(b)) => Value::Bool(b),
            Some(Kind::Int(i)) => Value::Int(i),
            Some(Kind::Float(f)) => Value::Float(f),
            Some(Kind::String(s)) => Value::String(s),
            Some(Kind::Bytes(b)) => Value::Bytes(b),
            Some(Kind::List(list)) => Value::List(
                list.items
                    .into_iter()
                    .map(Value::try_from)
                    .collect::<Result<_, _>>()?,
            ),
            Some(Kind::Map(map)) => Value::Map(map_from_proto(map)?),
            Some(Kind::Object(o)) => Value::Object(crate::value::ObjectRef {
                id: o.id,
                type_name: o.type_name,
            }),
            Some(Kind::Tensor(t)) => {
                let dtype = match pb::DType::try_from(t.dtype) {
                    Ok(pb::DType::DtypeFloat32) => DType::F32,
                    Ok(pb::DType::DtypeFloat64) => DType::F64,
                    Ok(pb::DType::DtypeInt32) => DType::I32,
                    Ok(pb::DType::DtypeInt64) => DType::I64,
                    Ok(pb::DType::DtypeUint8) => DType::U8,
                    Ok(pb::DType::DtypeBool) => DType::Bool,
                    _ => {
                        return Err(BridgeError::InvalidValue(format!(
                            "unknown tensor dtype {}",
                            t.dtype
                        )));
                    }
                };
                Value::Tensor(Tensor::new(dtype, t.shape, t.data)?)
            }
        })
    }
}

pub(crate) fn map_from_proto(map: pb::MapValue) -> Result<Map, BridgeError> {
    let mut out = Map::with_capacity(map.entries.len());
    for entry in map.entries {
        let value = entry
            .value
            .map(Value::try_from)
            .transpose()?
            .unwrap_or_default();
        if out.insert(entry.key.clone(), value).is_some() {
            return Err(BridgeError::InvalidValue(format!(
                "duplicate map key {:?}",
                entry.key
            )));
        }
    }
    Ok(out)
}

pub(crate) fn value_from_proto(value: Option<pb::Value>) -> Result<Value, BridgeError> {
    value
        .map(Value::try_from)
        .transpose()
        .map(Option::unwrap_or_default)
}

/// The typed error for a structured failure reported by the worker.
impl From<pb::ErrorInfo> for BridgeError {
    fn from(info: pb::ErrorInfo) -> Self {
        use pb::ErrorKind as K;
        let message = info.message;
        match K::try_from(info.kind).unwrap_or(K::PythonException) {
            K::PythonException => BridgeError::Python(PythonError {
                exception_type: info.r#type,
                message,
                traceback: info.traceback,
            }),
            K::SessionNotFound => BridgeError::SessionNotFound { message },
            K::NotFound => BridgeError::NotFound { message },
            K::InvalidArgument => BridgeError::InvalidArgument { message },
            K::ConstraintViolation => BridgeError::ConstraintViolation { message },
            K::AlreadyExists => BridgeError::AlreadyExists { message },
            K::CallbackFailed => BridgeError::CallbackFailed { message },
            K::ParseFailed => BridgeError::ParseFailed {
                field: info.field,
                raw_output: info.raw_output,
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::args;

    fn roundtrip(value: Value) -> Value {
        let wire = pb::Value::from(&value);
        let bytes = prost::Message::encode_to_vec(&wire);
        let back: pb::Value = prost::Message::decode(bytes.as_slice()).unwrap();
        Value::try_from(back).unwrap()
    }

    #[test]
    fn every_kind_round_trips() {
        let tensor = Tensor::from_f64(vec![3], &[1.0, f64::MAX, -0.0]).unwrap();
        let values = [
            Value::Null,
            Value::Bool(true),
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
            Value::Float(1e-300),
            Value::String("ünï 🐍 \0".into()),
            Value::bytes(vec![0, 255]),
            Value::from(vec![Value::from(1), Value::Null]),
            Value::Map(args([("z", Value::from(1)), ("a", Value::from("x"))])),
            Value::Tensor(tensor),
        ];
        for value in values {
            assert_eq!(roundtrip(value.clone()), value);
        }
    }

    #[test]
    fn map_order_is_kept() {
        let map = args([("z", 1), ("a", 2), ("m", 3)]);
        let back = roundtrip(Value::Map(map));
        let keys: Vec<_> = back.as_map().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["z", "a", "m"]);
    }

    #[test]
    fn a_tensor_with_the_wrong_length_is_refused() {
        let wire = pb::Value {
            kind: Some(pb::value::Kind::Tensor(pb::Tensor {
                dtype: pb::DType::DtypeFloat32 as i32,
                shape: vec![2, 2],
                data: vec![0; 15],
            })),
        };
        let err = Value::try_from(wire).unwrap_err();
        assert!(err.to_string().contains("needs 16 bytes, got 15"), "{err}");
    }

    #[test]
    fn duplicate_map_keys_are_refused() {
        let entry = |v| pb::MapEntry {
            key: "k".into(),
            value: Some(pb::Value::from(&Value::Int(v))),
        };
        let wire = pb::MapValue {
            entries: vec![entry(1), entry(2)],
        };
        assert!(map_from_proto(wire).is_err());
    }
}
