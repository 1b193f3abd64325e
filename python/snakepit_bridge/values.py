"""Conversion between Python values and the wire's typed ``Value``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from snakepit_bridge.errors import InvalidArgument

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# dtype name -> (numpy dtype string, proto enum name)
_DTYPES = {
    "float32": ("<f4", "DTYPE_FLOAT32"),
    "float64": ("<f8", "DTYPE_FLOAT64"),
    "int32": ("<i4", "DTYPE_INT32"),
    "int64": ("<i8", "DTYPE_INT64"),
    "uint8": ("|u1", "DTYPE_UINT8"),
    "bool": ("|b1", "DTYPE_BOOL"),
}
_ITEM_SIZE = {"float32": 4, "float64": 8, "int32": 4, "int64": 8, "uint8": 1, "bool": 1}


@dataclass(frozen=True)
class Tensor:
    """An n-dimensional array as it crosses the wire: little-endian, row-major ``data``."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise InvalidArgument(f"unsupported tensor dtype {self.dtype!r}")
        expected = math.prod(self.shape) * _ITEM_SIZE[self.dtype]
        if len(self.data) != expected:
            raise InvalidArgument(
                f"tensor of shape {self.shape} and dtype {self.dtype} needs {expected} bytes, "
                f"got {len(self.data)}"
            )

    def to_numpy(self) -> Any:
        import numpy as np

        return np.frombuffer(self.data, dtype=_DTYPES[self.dtype][0]).reshape(self.shape)

    @classmethod
    def from_numpy(cls, array: Any) -> Tensor:
        import numpy as np

        name = array.dtype.name
        if name not in _DTYPES:
            raise InvalidArgument(f"unsupported numpy dtype {name!r}")
        little = np.ascontiguousarray(array, dtype=np.dtype(_DTYPES[name][0]))
        return cls(name, tuple(int(d) for d in array.shape), little.tobytes())


@dataclass(frozen=True)
class ObjectHandle:
    """A reference to a Python object kept in a session."""

    id: str
    type_name: str = ""


def to_proto(pb2: Any, value: Any) -> Any:
    """The ``Value`` message for a Python value. Raises ``InvalidArgument`` for what cannot cross."""
    msg = pb2.Value()
    if value is None:
        msg.null = pb2.NULL_VALUE
    elif isinstance(value, bool):
        msg.bool = value
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidArgument(f"integer {value} does not fit in 64 bits")
        msg.int = value
    elif isinstance(value, float):
        msg.float = value
    elif isinstance(value, str):
        msg.string = value
    elif isinstance(value, (bytes, bytearray, memoryview)):
        msg.bytes = bytes(value)
    elif isinstance(value, (list, tuple)):
        msg.list.SetInParent()
        msg.list.items.extend(to_proto(pb2, item) for item in value)
    elif isinstance(value, dict):
        msg.map.SetInParent()
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgument(f"map keys must be strings, got {type(key).__name__}")
            msg.map.entries.add(key=key, value=to_proto(pb2, item))
    elif isinstance(value, ObjectHandle):
        msg.object.id = value.id
        msg.object.type_name = value.type_name
    elif isinstance(value, Tensor):
        msg.tensor.dtype = pb2.DType.Value(_DTYPES[value.dtype][1])
        msg.tensor.shape.extend(value.shape)
        msg.tensor.data = value.data
    else:
        return _to_proto_extra(pb2, value)
    return msg


def _to_proto_extra(pb2: Any, value: Any) -> Any:
    """numpy arrays and scalars, pydantic models: converted; anything else is refused."""
    module = type(value).__module__
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            return to_proto(pb2, Tensor.from_numpy(value))
        if isinstance(value, np.generic):
            return to_proto(pb2, value.item())
    if hasattr(value, "model_dump") and not isinstance(value, type):
        return to_proto(pb2, value.model_dump(mode="json"))
    raise InvalidArgument(f"values of type {type(value).__name__} cannot cross the bridge")


def from_proto(pb2: Any, msg: Any, numpy_tensors: bool = False) -> Any:
    """The Python value of a ``Value`` message. Tensors become :class:`Tensor` (or numpy arrays)."""
    kind = msg.WhichOneof("kind")
    if kind is None or kind == "null":
        return None
    if kind == "list":
        return [from_proto(pb2, item, numpy_tensors) for item in msg.list.items]
    if kind == "map":
        out: dict[str, Any] = {}
        for entry in msg.map.entries:
            if entry.key in out:
                raise InvalidArgument(f"duplicate map key {entry.key!r}")
            out[entry.key] = from_proto(pb2, entry.value, numpy_tensors)
        return out
    if kind == "object":
        return ObjectHandle(msg.object.id, msg.object.type_name)
    if kind == "tensor":
        name = pb2.DType.Name(msg.tensor.dtype)
        dtype = next((d for d, (_, enum) in _DTYPES.items() if enum == name), None)
        if dtype is None:
            raise InvalidArgument(f"unsupported tensor dtype {name}")
        tensor = Tensor(dtype, tuple(msg.tensor.shape), bytes(msg.tensor.data))
        return tensor.to_numpy() if numpy_tensors else tensor
    return getattr(msg, kind)


def map_from_proto(pb2: Any, msg: Any) -> dict[str, Any]:
    """A ``MapValue`` as a dict."""
    wrapper = pb2.Value()
    wrapper.map.CopyFrom(msg)
    return from_proto(pb2, wrapper)
