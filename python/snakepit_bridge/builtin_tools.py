"""Tools every worker offers: cheap probes for health, round-trips and benchmarks."""

from __future__ import annotations

from typing import Any

from snakepit_bridge.tools import tool


@tool(name="snakepit.echo")
async def echo(value: Any = None) -> Any:
    """Returns its argument unchanged."""
    return value


@tool(name="snakepit.noop")
async def noop() -> None:
    """Does nothing; measures the cost of a call."""
    return None
