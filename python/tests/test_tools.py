import asyncio
import threading

import pytest

from snakepit_bridge.errors import InvalidArgument, NotFound
from snakepit_bridge.tools import ToolContext, ToolRegistry


def make_registry():
    registry = ToolRegistry()

    def add(a: int, b: int = 1) -> int:
        """Adds two integers."""
        return a + b

    async def who(ctx: ToolContext) -> str:
        return ctx.session_id

    def count(n: int):
        yield from range(n)

    def thread_name() -> str:
        return threading.current_thread().name

    for f in (add, who, count, thread_name):
        registry.register(f)
    return registry


def call(registry, name, **arguments):
    return asyncio.run(registry.get(name).call(ToolContext("s-1", None), arguments))


def test_specs_come_from_the_signature():
    add = make_registry().get("add")
    assert add.description == "Adds two integers."
    assert [(p.name, p.default) for p in add.parameters][1] == ("b", 1)
    assert not add.streaming
    assert make_registry().get("count").streaming


def test_calls_with_defaults_and_context():
    registry = make_registry()
    assert call(registry, "add", a=2) == 3
    assert call(registry, "add", a=2, b=5) == 7
    assert call(registry, "who") == "s-1"


def test_sync_tools_run_off_the_event_loop_thread():
    assert call(make_registry(), "thread_name") != threading.main_thread().name


def test_bad_arguments_are_invalid_argument_errors():
    registry = make_registry()
    with pytest.raises(InvalidArgument, match="needs argument 'a'"):
        call(registry, "add")
    with pytest.raises(InvalidArgument, match="no parameter\\(s\\) c"):
        call(registry, "add", a=1, c=2)
    with pytest.raises(InvalidArgument, match="must be int, got str"):
        call(registry, "add", a="1")


def test_unknown_tools_are_not_found():
    with pytest.raises(NotFound, match="no tool named 'nope'"):
        make_registry().get("nope")


def test_streaming_tools_yield_in_order():
    async def collect():
        entry = make_registry().get("count")
        return [c async for c in entry.stream(ToolContext("s", None), {"n": 5})]

    assert asyncio.run(collect()) == [0, 1, 2, 3, 4]
