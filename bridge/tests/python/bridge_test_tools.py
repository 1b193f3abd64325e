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
