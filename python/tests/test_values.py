import math

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
