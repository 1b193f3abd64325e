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


# Containers nested deeper than this are sent as one ``PackedValue`` (protobuf decoders stop at 100
# nested messages, and each level of nesting costs up to three); received values may nest at most
# ``MAX_DEPTH`` levels.
PACK_BELOW_LEVEL = 8
MAX_DEPTH = 1024


def _check_str(value: str) -> str:
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start : exc.end].encode("utf-8", "surrogateescape").hex(" ")
        raise InvalidArgument(
            f"a string is not valid UTF-8 (bytes {bad} at character {exc.start}) and cannot cross "
            "the bridge"
        ) from None
    return value


def to_proto(pb2: Any, value: Any, level: int = 0) -> Any:
    """The ``Value`` message for a Python value. Raises ``InvalidArgument`` for what cannot cross."""
    msg = pb2.Value()
    fill(pb2, msg, value, level)
    return msg


def fill(pb2: Any, msg: Any, value: Any, level: int = 0) -> None:
    """Writes a Python value into the empty ``Value`` message ``msg``, in place (containers are
    built where they will stay: nothing is copied). Raises ``InvalidArgument`` for what cannot
    cross."""
    if isinstance(value, str):
        msg.string = _check_str(value)
    elif value is None:
        msg.null = pb2.NULL_VALUE
    elif isinstance(value, bool):
        msg.bool = value
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidArgument(f"integer {value} does not fit in 64 bits")
        msg.int = value
    elif isinstance(value, float):
        msg.float = value
    elif isinstance(value, (bytes, bytearray, memoryview)):
        msg.bytes = bytes(value)
    elif isinstance(value, (list, tuple, dict)) and level >= PACK_BELOW_LEVEL:
        msg.packed.SetInParent()
        _pack(pb2, value, msg.packed.nodes)
    elif isinstance(value, (list, tuple)):
        items = msg.list.items
        msg.list.SetInParent()
        for item in value:
            fill(pb2, items.add(), item, level + 1)
    elif isinstance(value, dict):
        entries = msg.map.entries
        msg.map.SetInParent()
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgument(f"map keys must be strings, got {type(key).__name__}")
            fill(pb2, entries.add(key=_check_str(key)).value, item, level + 1)
    elif isinstance(value, ObjectHandle):
        msg.object.id = value.id
        msg.object.type_name = value.type_name
    elif isinstance(value, Tensor):
        msg.tensor.dtype = pb2.DType.Value(_DTYPES[value.dtype][1])
        msg.tensor.shape.extend(value.shape)
        msg.tensor.data = value.data
    else:
        _fill_extra(pb2, msg, value, level)


def _pack(pb2: Any, value: Any, nodes: Any) -> None:
    """Appends ``value`` and everything below it to ``nodes`` in pre-order, without recursion.
    Refuses nesting deeper than ``MAX_DEPTH`` (which also stops a list that contains itself)."""
    # (value, key, depth)
    todo: list[tuple[Any, str, int]] = [(value, "", 0)]
    while todo:
        item, key, depth = todo.pop()
        if isinstance(item, (list, tuple, dict)):
            if depth >= MAX_DEPTH:
                raise InvalidArgument(f"nesting deeper than {MAX_DEPTH} levels cannot cross the bridge")
            if isinstance(item, dict):
                for k in item:
                    if not isinstance(k, str):
                        raise InvalidArgument(f"map keys must be strings, got {type(k).__name__}")
                    _check_str(k)
                nodes.add(key=key, map_len=len(item))
                todo.extend((child, k, depth + 1) for k, child in reversed(list(item.items())))
            else:
                nodes.add(key=key, list_len=len(item))
                todo.extend((child, "", depth + 1) for child in reversed(item))
            continue
        leaf = to_proto(pb2, item)
        kind = leaf.WhichOneof("kind")
        if kind in ("list", "map", "packed"):
            # A model or numpy value whose plain form is a container: pack that.
            todo.append((from_proto(pb2, leaf), key, depth))
            continue
        node = nodes.add(key=key)
        if kind in ("tensor", "object"):
            getattr(node, kind).CopyFrom(getattr(leaf, kind))
        else:
            setattr(node, kind, getattr(leaf, kind))


def _fill_extra(pb2: Any, msg: Any, value: Any, level: int = 0) -> None:
    """numpy arrays and scalars, pydantic models, DSPy examples and predictions: converted;
    anything else is refused."""
    module = type(value).__module__
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray):
            return fill(pb2, msg, Tensor.from_numpy(value), level)
        if isinstance(value, np.generic):
            return fill(pb2, msg, value.item(), level)
    if hasattr(value, "model_dump") and not isinstance(value, type):
        return fill(pb2, msg, value.model_dump(mode="json"), level)
    store = getattr(value, "_store", None)
    if isinstance(store, dict) and hasattr(value, "toDict"):
        # dspy.Example and dspy.Prediction: their fields.
        return fill(pb2, msg, store, level)
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
    if kind == "packed":
        return _unpack(pb2, msg.packed, numpy_tensors)
    return _leaf(pb2, msg, kind, numpy_tensors)


def _leaf(pb2: Any, msg: Any, kind: str, numpy_tensors: bool) -> Any:
    if kind == "null":
        return None
    if kind == "object":
        return ObjectHandle(msg.object.id, msg.object.type_name)
    if kind == "tensor":
        name = pb2.DType.Name(msg.tensor.dtype) if msg.tensor.dtype in pb2.DType.values() else "?"
        dtype = next((d for d, (_, enum) in _DTYPES.items() if enum == name), None)
        if dtype is None:
            raise InvalidArgument(f"unsupported tensor dtype {msg.tensor.dtype}")
        tensor = Tensor(dtype, tuple(msg.tensor.shape), bytes(msg.tensor.data))
        return tensor.to_numpy() if numpy_tensors else tensor
    return getattr(msg, kind)


def _unpack(pb2: Any, packed: Any, numpy_tensors: bool) -> Any:
    """Rebuilds a value from its pre-order nodes without recursion; refuses malformed trees."""

    def bad(what: str) -> InvalidArgument:
        return InvalidArgument(f"malformed packed value: {what}")

    # (container, expected length, its key in its parent)
    stack: list[tuple[Any, int, str]] = []
    nodes = iter(packed.nodes)
    while True:
        node = next(nodes, None)
        if node is None:
            raise bad("it ends before its containers are complete")
        kind = node.WhichOneof("kind")
        if kind in ("list_len", "map_len") and getattr(node, kind) > 0:
            if len(stack) >= MAX_DEPTH:
                raise InvalidArgument(f"nesting deeper than {MAX_DEPTH} levels")
            stack.append(([] if kind == "list_len" else {}, getattr(node, kind), node.key))
            continue
        if kind == "list_len":
            value: Any = []
        elif kind == "map_len":
            value = {}
        else:
            value = _leaf(pb2, node, kind or "null", numpy_tensors)
        key = node.key
        while True:
            if not stack:
                if next(nodes, None) is not None:
                    raise bad("nodes follow the end of the value")
                return value
            container, length, parent_key = stack[-1]
            if isinstance(container, list):
                if key:
                    raise bad("a list item has a key")
                container.append(value)
            else:
                if key in container:
                    raise bad(f"duplicate map key {key!r}")
                container[key] = value
            if len(container) < length:
                break
            stack.pop()
            value, key = container, parent_key


def map_from_proto(pb2: Any, msg: Any) -> dict[str, Any]:
    """A ``MapValue`` as a dict."""
    out: dict[str, Any] = {}
    for entry in msg.entries:
        if entry.key in out:
            raise InvalidArgument(f"duplicate map key {entry.key!r}")
        out[entry.key] = from_proto(pb2, entry.value)
    return out
