//! Conversion between the wire's generated types and the bridge's own, in one place, so that no
//! generated type leaks into the public API.

use crate::error::{BridgeError, PythonError};
use crate::proto as pb;
use crate::value::{DType, Map, Tensor, Value};

/// Containers nested deeper than this many levels are sent as one [`pb::PackedValue`]: protobuf
/// decoders (upb in Python, prost in Rust) stop at 100 nested messages, and each level of
/// nesting costs up to three.
pub(crate) const PACK_BELOW_LEVEL: usize = 8;

/// The deepest nesting a received value may have; deeper is refused as malformed.
pub(crate) const MAX_DEPTH: usize = 1024;

impl From<&Value> for pb::Value {
    fn from(value: &Value) -> Self {
        encode(value, 0)
    }
}

fn encode(value: &Value, level: usize) -> pb::Value {
    use pb::value::Kind;
    let kind = match value {
        Value::List(_) | Value::Map(_) if level >= PACK_BELOW_LEVEL => {
            let mut nodes = Vec::new();
            pack(value, String::new(), &mut nodes);
            Kind::Packed(pb::PackedValue { nodes })
        }
        Value::List(items) => Kind::List(pb::ListValue {
            items: items.iter().map(|item| encode(item, level + 1)).collect(),
        }),
        Value::Map(map) => Kind::Map(encode_map(map, level)),
        Value::Null => Kind::Null(pb::NullValue::NullValue as i32),
        Value::Bool(b) => Kind::Bool(*b),
        Value::Int(i) => Kind::Int(*i),
        Value::Float(f) => Kind::Float(*f),
        Value::String(s) => Kind::String(s.clone()),
        Value::Bytes(b) => Kind::Bytes(b.clone()),
        Value::Object(o) => Kind::Object(object_to_proto(o)),
        Value::Tensor(t) => Kind::Tensor(tensor_to_proto(t)),
    };
    pb::Value { kind: Some(kind) }
}

fn object_to_proto(o: &crate::value::ObjectRef) -> pb::ObjectRef {
    pb::ObjectRef {
        id: o.id.clone(),
        type_name: o.type_name.clone(),
    }
}

fn tensor_to_proto(t: &Tensor) -> pb::Tensor {
    pb::Tensor {
        dtype: dtype_to_proto(t.dtype()) as i32,
        shape: t.shape().to_vec(),
        data: t.data().to_vec(),
    }
}

/// Appends `value` and everything below it to `nodes`, in pre-order.
fn pack(value: &Value, key: String, nodes: &mut Vec<pb::PackedNode>) {
    use pb::packed_node::Kind;
    let kind = match value {
        Value::Null => Kind::Null(pb::NullValue::NullValue as i32),
        Value::Bool(b) => Kind::Bool(*b),
        Value::Int(i) => Kind::Int(*i),
        Value::Float(f) => Kind::Float(*f),
        Value::String(s) => Kind::String(s.clone()),
        Value::Bytes(b) => Kind::Bytes(b.clone()),
        Value::Object(o) => Kind::Object(object_to_proto(o)),
        Value::Tensor(t) => Kind::Tensor(tensor_to_proto(t)),
        Value::List(items) => Kind::ListLen(container_len(items.len())),
        Value::Map(map) => Kind::MapLen(container_len(map.len())),
    };
    nodes.push(pb::PackedNode {
        kind: Some(kind),
        key,
    });
    match value {
        Value::List(items) => {
            for item in items {
                pack(item, String::new(), nodes);
            }
        }
        Value::Map(map) => {
            for (k, v) in map {
                pack(v, k.clone(), nodes);
            }
        }
        _ => {}
    }
}

fn container_len(len: usize) -> u32 {
    // A container of more than 4 billion items cannot be sent anyway (frames are capped far
    // below that); saturate rather than wrap.
    u32::try_from(len).unwrap_or(u32::MAX)
}

pub(crate) fn map_to_proto(map: &Map) -> pb::MapValue {
    encode_map(map, 0)
}

fn encode_map(map: &Map, level: usize) -> pb::MapValue {
    pb::MapValue {
        entries: map
            .iter()
            .map(|(key, value)| pb::MapEntry {
                key: key.clone(),
                value: Some(encode(value, level + 1)),
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
            Some(Kind::Object(o)) => Value::Object(object_from_proto(o)),
            Some(Kind::Tensor(t)) => Value::Tensor(tensor_from_proto(t)?),
            Some(Kind::Packed(packed)) => unpack(packed)?,
        })
    }
}

fn object_from_proto(o: pb::ObjectRef) -> crate::value::ObjectRef {
    crate::value::ObjectRef {
        id: o.id,
        type_name: o.type_name,
    }
}

fn tensor_from_proto(t: pb::Tensor) -> Result<Tensor, BridgeError> {
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
    Tensor::new(dtype, t.shape, t.data)
}

/// A container being rebuilt from packed nodes: what it holds so far and how many it will hold.
enum Open {
    List(Vec<Value>, usize),
    Map(Map, usize),
}

/// Rebuilds a value from its pre-order nodes without recursion, refusing malformed trees:
/// missing or extra nodes, keys on list items, duplicate keys, nesting deeper than [`MAX_DEPTH`].
fn unpack(packed: pb::PackedValue) -> Result<Value, BridgeError> {
    use pb::packed_node::Kind;
    let bad = |what: &str| BridgeError::InvalidValue(format!("malformed packed value: {what}"));
    let too_deep = || BridgeError::InvalidValue(format!("nesting deeper than {MAX_DEPTH} levels"));
    let mut stack: Vec<(Open, String)> = Vec::new();
    let mut nodes = packed.nodes.into_iter();
    loop {
        let node = nodes
            .next()
            .ok_or_else(|| bad("it ends before its containers are complete"))?;
        let mut finished = match node.kind {
            Some(Kind::ListLen(len)) | Some(Kind::MapLen(len)) if len > 0 => {
                if stack.len() >= MAX_DEPTH {
                    return Err(too_deep());
                }
                let len = len as usize;
                let capacity = len.min(1 << 16);
                let open = match node.kind {
                    Some(Kind::ListLen(_)) => Open::List(Vec::with_capacity(capacity), len),
                    _ => Open::Map(Map::with_capacity(capacity), len),
                };
                stack.push((open, node.key));
                continue;
            }
            Some(Kind::ListLen(_)) => (Value::List(Vec::new()), node.key),
            Some(Kind::MapLen(_)) => (Value::Map(Map::new()), node.key),
            None | Some(Kind::Null(_)) => (Value::Null, node.key),
            Some(Kind::Bool(b)) => (Value::Bool(b), node.key),
            Some(Kind::Int(i)) => (Value::Int(i), node.key),
            Some(Kind::Float(f)) => (Value::Float(f), node.key),
            Some(Kind::String(s)) => (Value::String(s), node.key),
            Some(Kind::Bytes(b)) => (Value::Bytes(b), node.key),
            Some(Kind::Object(o)) => (Value::Object(object_from_proto(o)), node.key),
            Some(Kind::Tensor(t)) => (Value::Tensor(tensor_from_proto(t)?), node.key),
        };
        // Hand the finished value to its parent; close every parent that is now complete.
        loop {
            let (value, key) = finished;
            match stack.last_mut() {
                None => {
                    return match nodes.next() {
                        None => Ok(value),
                        Some(_) => Err(bad("nodes follow the end of the value")),
                    };
                }
                Some((Open::List(items, len), _)) => {
                    if !key.is_empty() {
                        return Err(bad("a list item has a key"));
                    }
                    items.push(value);
                    if items.len() < *len {
                        break;
                    }
                }
                Some((Open::Map(map, len), _)) => {
                    if map.contains_key(&key) {
                        return Err(bad(&format!("duplicate map key {key:?}")));
                    }
                    map.insert(key, value);
                    if map.len() < *len {
                        break;
                    }
                }
            }
            let (open, key) = stack.pop().expect("the parent is on the stack");
            finished = match open {
                Open::List(items, _) => (Value::List(items), key),
                Open::Map(map, _) => (Value::Map(map), key),
            };
        }
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
            K::ResultTooLarge => BridgeError::ResultTooLarge { message },
            K::UnknownDefinition => BridgeError::Protocol(format!(
                "the worker does not hold a definition the request named: {message}"
            )),
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

    fn deep(depth: usize) -> Value {
        let mut value = Value::from("bottom");
        for level in 0..depth {
            value = if level % 2 == 0 {
                Value::List(vec![Value::Int(level as i64), value])
            } else {
                Value::Map(args([("k", value), ("n", Value::Null)]))
            };
        }
        value
    }

    #[test]
    fn deep_nesting_round_trips_through_the_packed_form() {
        for depth in [7, 8, 9, 64, 1000] {
            let value = deep(depth);
            assert_eq!(roundtrip(value.clone()), value, "depth {depth}");
        }
        // Empty containers, and packed values next to plain ones.
        let value = Value::List(vec![deep(20), Value::List(vec![]), Value::Map(Map::new())]);
        assert_eq!(roundtrip(value.clone()), value);
    }

    fn packed(nodes: Vec<pb::packed_node::Kind>) -> pb::Value {
        pb::Value {
            kind: Some(pb::value::Kind::Packed(pb::PackedValue {
                nodes: nodes
                    .into_iter()
                    .map(|kind| pb::PackedNode {
                        kind: Some(kind),
                        key: String::new(),
                    })
                    .collect(),
            })),
        }
    }

    #[test]
    fn malformed_or_too_deep_packed_values_are_refused() {
        use pb::packed_node::Kind;
        let cases = [
            (packed(vec![]), "ends before"),
            (packed(vec![Kind::ListLen(2), Kind::Int(1)]), "ends before"),
            (packed(vec![Kind::Int(1), Kind::Int(2)]), "nodes follow"),
            (
                packed(vec![Kind::MapLen(2), Kind::Int(1), Kind::Int(2)]),
                "duplicate map key",
            ),
            (
                packed(
                    std::iter::repeat_n(Kind::ListLen(1), MAX_DEPTH + 1)
                        .chain([Kind::Int(0)])
                        .collect(),
                ),
                "nesting deeper than 1024",
            ),
        ];
        for (wire, expected) in cases {
            let err = Value::try_from(wire).unwrap_err();
            assert!(
                matches!(err, BridgeError::InvalidValue(_)) && err.to_string().contains(expected),
                "{err}"
            );
        }
        let mut keyed = packed(vec![Kind::ListLen(1), Kind::Int(1)]);
        if let Some(pb::value::Kind::Packed(p)) = &mut keyed.kind {
            p.nodes[1].key = "k".into();
        }
        assert!(
            Value::try_from(keyed)
                .unwrap_err()
                .to_string()
                .contains("list item has a key")
        );
    }

    fn any_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>()
                .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
                .prop_map(Value::Float),
            ".*".prop_map(Value::String),
            proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::Bytes),
        ];
        // Deep enough to cross the packing level; wide enough for many shapes.
        leaf.prop_recursive(24, 256, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
                proptest::collection::vec((".{0,6}", inner), 0..4)
                    .prop_map(|entries| Value::Map(entries.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn any_value_round_trips(value in any_value()) {
            proptest::prop_assert_eq!(roundtrip(value.clone()), value);
        }

        /// Arbitrary bytes either fail to decode or convert to a value or a typed error; no panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Ok(wire) = <pb::Value as prost::Message>::decode(bytes.as_slice()) {
                let _ = Value::try_from(wire);
            }
            if let Ok(response) = <pb::CallResponse as prost::Message>::decode(bytes.as_slice())
                && let Some(pb::call_response::Result::Value(value)) = response.result
            {
                let _ = Value::try_from(value);
            }
        }

        /// Valid encodings with bytes flipped: the same guarantee, closer to real messages.
        #[test]
        fn mutated_encodings_never_panic(
            value in any_value(),
            flips in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 1..6),
        ) {
            let mut bytes = prost::Message::encode_to_vec(&pb::Value::from(&value));
            if !bytes.is_empty() {
                for (at, byte) in flips {
                    let at = at % bytes.len();
                    bytes[at] = byte;
                }
            }
            if let Ok(wire) = <pb::Value as prost::Message>::decode(bytes.as_slice()) {
                let _ = Value::try_from(wire);
            }
        }
    }
}
