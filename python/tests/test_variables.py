import asyncio

import pytest

from snakepit_bridge.errors import AlreadyExists, ConstraintViolation, InvalidArgument, NotFound
from snakepit_bridge.values import Tensor
from snakepit_bridge.variables import Constraints, VariableStore


def test_float_bounds_are_checked_on_every_set():
    store = VariableStore()
    store.register("temperature", "float", 0.5, Constraints(min=0.0, max=1.0))
    assert store.set("temperature", 1).value == 1.0
    with pytest.raises(ConstraintViolation, match="above the maximum 1.0"):
        store.set("temperature", 1.5)
    with pytest.raises(ConstraintViolation, match="below the minimum"):
        store.set("temperature", -0.1)
    assert store.get("temperature").value == 1.0
    assert store.get("temperature").version == 2


def test_types_are_enforced():
    store = VariableStore()
    store.register("n", "integer", 3, Constraints())
    with pytest.raises(ConstraintViolation, match="expected an integer, got float"):
        store.set("n", 3.5)
    with pytest.raises(ConstraintViolation, match="expected an integer, got bool"):
        store.set("n", True)
    store.register("flag", "boolean", False, Constraints())
    with pytest.raises(ConstraintViolation):
        store.set("flag", 1)


def test_choices_lengths_dimensions_and_shapes():
    store = VariableStore()
    store.register("mode", "choice", "fast", Constraints(choices=["fast", "slow"]))
    with pytest.raises(ConstraintViolation, match="not one of 'fast', 'slow'"):
        store.set("mode", "medium")
    store.register("name", "string", "abc", Constraints(min_length=2, max_length=4))
    with pytest.raises(ConstraintViolation, match="above the maximum 4"):
        store.set("name", "abcde")
    store.register("vec", "embedding", [1, 2, 3], Constraints(dimensions=3))
    assert store.get("vec").value == [1.0, 2.0, 3.0]
    with pytest.raises(ConstraintViolation, match="expected 3 dimensions, got 2"):
        store.set("vec", [1.0, 2.0])
    store.register("t", "tensor", Tensor("uint8", (2,), b"\x01\x02"), Constraints(shape=(2,)))
    with pytest.raises(ConstraintViolation, match="expected shape"):
        store.set("t", Tensor("uint8", (3,), b"\x01\x02\x03"))


def test_registration_errors():
    store = VariableStore()
    store.register("x", "float", 0.0, Constraints())
    with pytest.raises(AlreadyExists):
        store.register("x", "float", 0.0, Constraints())
    with pytest.raises(InvalidArgument, match="needs at least one choice"):
        store.register("c", "choice", "a", Constraints())
    with pytest.raises(InvalidArgument, match="unknown variable type"):
        store.register("q", "complex", 1, Constraints())
    with pytest.raises(ConstraintViolation):
        store.register("bad", "float", 5.0, Constraints(max=1.0))
    with pytest.raises(NotFound):
        store.get("missing")


def test_watchers_see_every_change_of_what_they_watch():
    async def scenario():
        store = VariableStore()
        store.register("a", "integer", 0, Constraints())
        store.register("b", "integer", 0, Constraints())
        only_a = store.watch(["a"])
        everything = store.watch([])
        for i in range(1, 4):
            store.set("a", i)
        store.set("b", 10)
        seen_a = [only_a.get_nowait().value for _ in range(only_a.qsize())]
        seen_all = [(v.name, v.value) for v in [everything.get_nowait() for _ in range(4)]]
        store.close()
        assert await only_a.get() is None
        return seen_a, seen_all

    seen_a, seen_all = asyncio.run(scenario())
    assert seen_a == [1, 2, 3]
    assert seen_all == [("a", 1), ("a", 2), ("a", 3), ("b", 10)]


def test_idle_sessions_expire_after_their_ttl():
    from snakepit_bridge.sessions import SessionStore

    store = SessionStore()
    short = store.create("short", 10, {})
    store.create("long", 1000, {})
    expired = store.prune(now=short.last_used_at + 11)
    assert expired == ["short"]
    assert len(store) == 1
