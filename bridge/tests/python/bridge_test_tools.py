"""Tools the bridge's Rust tests call in real workers."""

import asyncio
import os

from snakepit_bridge import ToolContext, tool


@tool
async def echo(value=None):
    """Returns its argument unchanged."""
    return value


@tool
def add(a: int, b: int = 1) -> int:
    """Adds two integers."""
    return a + b


@tool
def fail(message: str):
    raise ValueError(message)


@tool
async def count(n: int):
    """Yields 0..n."""
    for i in range(n):
        yield i


@tool
async def slow(seconds: float, started_file: str = ""):
    """Sleeps; with ``started_file``, creates that file first, so a test knows the call runs."""
    if started_file:
        with open(started_file, "w"):
            pass
    await asyncio.sleep(seconds)
    return seconds


@tool
async def whoami(ctx: ToolContext):
    return {"session": ctx.session_id, "pid": os.getpid()}


@tool
async def ask_rust(ctx: ToolContext, name: str, x: int):
    """Calls the Rust tool `name` with x, and adds 1 to its answer."""
    return (await ctx.call_rust(name, x=x)) + 1


@tool
async def tensor_sum(t):
    """Sums a tensor's elements (as float64)."""
    return float(t.to_numpy().astype("float64").sum())


@tool
async def read_rust_stream(ctx: ToolContext, name: str, n: int, stop_after: int = 0):
    """Reads the streaming Rust tool `name` (with n), all of it, or only `stop_after` items."""
    items = []
    async for item in ctx.stream_rust(name, n=n):
        items.append(item)
        if stop_after and len(items) >= stop_after:
            break
    return items


@tool
async def call_rust_tool(ctx: ToolContext, name: str, n: int):
    """`ctx.call_rust` on a Rust tool; the exception's class name if it raises."""
    try:
        return await ctx.call_rust(name, n=n)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


EXCHANGES = {"closed": 0}


@tool
async def upper(lines, prefix: str = ""):
    """Yields each line of the stream `lines` in upper case."""
    try:
        async for line in lines:
            yield prefix + line.upper()
    finally:
        EXCHANGES["closed"] += 1


@tool
async def total(numbers):
    """The sum of the stream `numbers`."""
    return sum([n async for n in numbers])


@tool
def exchanges():
    """How many `upper` calls have ended (their generator closed)."""
    return dict(EXCHANGES)
