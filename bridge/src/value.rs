//! Values that cross the bridge: what tool arguments, results and variables are made of.

use indexmap::IndexMap;

/// A map with string keys that keeps insertion order (as Python's `dict` does).
pub type Map = IndexMap<String, Value>;

/// A typed value, mirroring the wire's `Value` message and Python's types.
///
/// ```
/// use snakepit_grpc_bridge::Value;
/// let v = Value::from(vec![Value::from(1), Value::from("two"), Value::Null]);
/// assert_eq!(v.as_list().map(|l| l.len()), Some(3));
/// assert_eq!(Value::from(2.5).as_f64(), Some(2.5));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// Python `None`.
    #[default]
    Null,
    /// Python `bool`.
    Bool(bool),
    /// Python `int` within 64 bits.
    Int(i64),
    /// Python `float`.
    Float(f64),
    /// Python `str`.
    String(String),
    /// Python `bytes`.
    Bytes(Vec<u8>),
    /// Python `list` (or `tuple`).
    List(Vec<Value>),
    /// Python `dict` with string keys.
    Map(Map),
    /// An n-dimensional array (numpy in Python).
    Tensor(Tensor),
    /// A Python object that stays in a session's worker; pass it back to refer to it.
    Object(ObjectRef),
}

/// A handle to a Python object kept in a session (a module instance, or a result that is not
/// plain data).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// The object's id in its session.
    pub id: String,
    /// Its Python class, e.g. `dspy.predict.predict.Predict`.
    pub type_name: String,
}

impl Value {
    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The number as a float, if this is a float or an integer.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The text, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The items, if this is a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// The entries, if this is a map.
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(map) => Some(map),
            _ => None,
        }
    }

    /// The tensor, if this is one.
    pub fn as_tensor(&self) -> Option<&Tensor> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// The object handle, if this is one.
    pub fn as_object(&self) -> Option<&ObjectRef> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// Whether this is `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// A `Bytes` value (there is no `From<Vec<u8>>`, which would be ambiguous with lists).
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Value::Bytes(bytes.into())
    }

    /// The name of this value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Map(_) => "map",
            Value::Tensor(_) => "tensor",
            Value::Object(_) => "object",
        }
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self { Value::Int(i64::from(v)) }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Float(f64::from(v))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(v)
    }
}
impl From<Tensor> for Value {
    fn from(v: Tensor) -> Self {
        Value::Tensor(v)
    }
}
impl From<ObjectRef> for Value {
    fn from(v: ObjectRef) -> Self {
        Value::Object(v)
    }
}
impl From<Map> for Value {
    fn from(v: Map) -> Self {
        Value::Map(v)
    }
}
impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Self {
        Value::List(v.into_iter().map(Into::into).collect())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// JSON values map onto typed values: integers that fit 64 bits stay integers, other numbers
/// become floats, objects keep their key order.
///
/// ```
/// use snakepit_grpc_bridge::Value;
/// let v = Value::from(serde_json::json!({"answer": "Paris", "n": 3, "p": 0.5}));
/// assert_eq!(v.as_map().unwrap()["n"], Value::Int(3));
/// ```
impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(items) => {
                Value::List(items.into_iter().map(Value::from).collect())
            }
            serde_json::Value::Object(map) => {
                Value::Map(map.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
            }
        }
    }
}

/// Typed values as JSON: the reverse of `From<serde_json::Value>` for plain data. Floats that JSON
/// cannot hold (NaN, infinities) become `null`; bytes a list of numbers; an `f64` tensor its
/// values as a flat list (other tensors their raw bytes); an object handle
/// `{"$object": id, "type": class}`.
///
/// ```
/// use snakepit_grpc_bridge::Value;
/// let json = serde_json::json!({"answer": "Paris", "n": 3, "tags": ["a"]});
/// assert_eq!(serde_json::Value::from(Value::from(json.clone())), json);
/// ```
impl From<Value> for serde_json::Value {
    fn from(v: Value) -> Self {
        use serde_json::Value as Json;
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(b),
            Value::Int(i) => Json::from(i),
            Value::Float(f) => serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number),
            Value::String(s) => Json::String(s),
            Value::Bytes(bytes) => Json::Array(bytes.into_iter().map(Json::from).collect()),
            Value::List(items) => Json::Array(items.into_iter().map(Json::from).collect()),
            Value::Map(map) => Json::Object(map.into_iter().map(|(k, v)| (k, v.into())).collect()),
            Value::Tensor(tensor) => match tensor.to_f64() {
                Some(values) => Json::Array(
                    values
                        .into_iter()
                        .map(|f| serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number))
                        .collect(),
                ),
                None => Json::Array(tensor.data.iter().copied().map(Json::from).collect()),
            },
            Value::Object(handle) => {
                serde_json::json!({"$object": handle.id, "type": handle.type_name})
            }
        }
    }
}

/// Builds argument maps: `args([("a", Value::from(1))])`, or from any iterator of pairs.
pub fn args<K, V, I>(pairs: I) -> Map
where
    K: Into<String>,
    V: Into<Value>,
    I: IntoIterator<Item = (K, V)>,
{
    pairs
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

/// The element type of a [`Tensor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
    /// 8-bit unsigned integer.
    U8,
    /// Boolean, one byte each.
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::U8 | DType::Bool => 1,
        }
    }
}

/// An n-dimensional array: little-endian, row-major bytes.
///
/// ```
/// use snakepit_grpc_bridge::Tensor;
/// let t = Tensor::from_f32(vec![2, 2], &[1.0, 2.0, 3.0, 4.0])?;
/// assert_eq!(t.to_f32(), Some(vec![1.0, 2.0, 3.0, 4.0]));
/// # Ok::<(), snakepit_grpc_bridge::BridgeError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    dtype: DType,
    shape: Vec<u64>,
    data: Vec<u8>,
}

impl Tensor {
    /// A tensor from raw little-endian bytes; checks that their length fits the shape.
    pub fn new(dtype: DType, shape: Vec<u64>, data: Vec<u8>) -> Result<Self, crate::BridgeError> {
        let elements = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .and_then(|n| usize::try_from(n).ok())
            .and_then(|n| n.checked_mul(dtype.size()));
        if elements != Some(data.len()) {
            return Err(crate::BridgeError::InvalidValue(format!(
                "a {dtype:?} tensor of shape {shape:?} needs {} bytes, got {}",
                elements.map_or("too many".to_owned(), |n| n.to_string()),
                data.len()
            )));
        }
        Ok(Tensor { dtype, shape, data })
    }

    /// A float32 tensor.
    pub fn from_f32(shape: Vec<u64>, values: &[f32]) -> Result<Self, crate::BridgeError> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::new(DType::F32, shape, data)
    }

    /// A float64 tensor.
    pub fn from_f64(shape: Vec<u64>, values: &[f64]) -> Result<Self, crate::BridgeError> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::new(DType::F64, shape, data)
    }

    /// The elements as `f32`, if the dtype is float32.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        (self.dtype == DType::F32).then(|| {
            self.data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect()
        })
    }

    /// The elements as `f64`, if the dtype is float64.
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        (self.dtype == DType::F64).then(|| {
            self.data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect()
        })
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The shape.
    pub fn shape(&self) -> &[u64] {
        &self.shape
    }

    /// The raw little-endian bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
}
