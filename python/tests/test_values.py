import math
import sys

import numpy as np
import pytest
from conftest import PB2

from snakepit_bridge.errors import InvalidArgument
from snakepit_bridge.values import Tensor, from_proto, to_proto


def roundtrip(value):
    wire = PB2.Value.FromString(to_proto(PB2, value).SerializeToString())
    return from_proto(PB2, wire)


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -(2**63),
        2**63 - 1,
        1.5,
        -0.0,
        "",
        "héllo 🐍 \u0000 end",
        b"\x00\xffbytes",
        [],
        [1, "two", [3.0, None]],
        {},
        {"b": 1, "a": {"nested": [True]}},
    ],
)
def test_values_round_trip_exactly(value):
    out = roundtrip(value)
    assert out == value
    assert type(out) is type(value)


def test_map_order_is_kept():
    assert list(roundtrip({"z": 1, "a": 2, "m": 3})) == ["z", "a", "m"]


def test_special_floats_round_trip():
    assert math.isnan(roundtrip(float("nan")))
    assert roundtrip(float("inf")) == float("inf")


def test_tuples_become_lists():
    assert roundtrip((1, 2)) == [1, 2]


def test_integers_wider_than_64_bits_are_refused():
    with pytest.raises(InvalidArgument, match="does not fit in 64 bits"):
        to_proto(PB2, 2**63)


def test_non_string_map_keys_are_refused():
    with pytest.raises(InvalidArgument, match="map keys must be strings"):
        to_proto(PB2, {1: "a"})


def test_unknown_objects_are_refused_by_name():
    with pytest.raises(InvalidArgument, match="object cannot cross"):
        to_proto(PB2, object())


def test_numpy_arrays_become_tensors_and_back():
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    tensor = roundtrip(array)
    assert isinstance(tensor, Tensor)
    assert tensor.shape == (3, 4) and tensor.dtype == "float32"
    np.testing.assert_array_equal(tensor.to_numpy(), array)


def test_numpy_scalars_become_plain_numbers():
    assert roundtrip(np.int64(7)) == 7
    assert roundtrip(np.float64(0.25)) == 0.25


def test_a_tensor_with_the_wrong_byte_count_is_refused():
    with pytest.raises(InvalidArgument, match="needs 16 bytes"):
        Tensor("float32", (2, 2), b"\x00" * 15)


def deep(depth):
    value = "bottom"
    for level in range(depth):
        value = [level, value] if level % 2 == 0 else {"k": value, "n": None}
    return value


@pytest.mark.parametrize("depth", [7, 8, 9, 64, 1000])
def test_deep_nesting_round_trips_through_the_packed_form(depth):
    value = deep(depth)
    wire = to_proto(PB2, value)
    back = roundtrip(value)
    # Comparing two 1000-deep values recurses in Python itself.
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)
    try:
        assert back == value
    finally:
        sys.setrecursionlimit(old)
    if depth > 8:
        # Past the 8th level the sender switched to the flat form; the wire stays shallow.
        assert "packed" in str(wire)


def test_nesting_deeper_than_the_limit_and_cycles_are_refused():
    with pytest.raises(InvalidArgument, match="deeper than 1024"):
        to_proto(PB2, deep(1100))
    looped = []
    looped.append(looped)
    with pytest.raises(InvalidArgument, match="deeper than 1024"):
        to_proto(PB2, looped)


def test_strings_that_are_not_utf8_are_refused_by_name():
    undecodable = b"ok \xff\xfe".decode("utf-8", "surrogateescape")
    with pytest.raises(InvalidArgument, match="not valid UTF-8 .bytes ff fe at character 3"):
        to_proto(PB2, {"answer": undecodable})


def packed(*kinds):
    msg = PB2.Value()
    msg.packed.SetInParent()
    for kind, value in kinds:
        msg.packed.nodes.add(**{kind: value})
    return msg


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (packed(), "ends before"),
        (packed(("list_len", 2), ("int", 1)), "ends before"),
        (packed(("int", 1), ("int", 2)), "nodes follow"),
        (packed(("map_len", 2), ("int", 1), ("int", 2)), "duplicate map key"),
        (packed(*[("list_len", 1)] * 1025, ("int", 0)), "deeper than 1024"),
    ],
)
def test_malformed_packed_values_are_refused(wire, message):
    with pytest.raises(InvalidArgument, match=message):
        from_proto(PB2, wire)
