"""Shared set-up: the generated stubs, and a real gRPC server on a Unix socket."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from snakepit_bridge.proto import ensure_stubs  # noqa: E402

ensure_stubs()

import grpc  # noqa: E402

from snakepit_bridge.proto import pb2, pb2_grpc  # noqa: E402
from snakepit_bridge.server import BridgeServicer, create_server  # noqa: E402
from snakepit_bridge.tools import ToolRegistry  # noqa: E402


# Every directory a test makes lives in this one, removed when the test run ends.
_SCRATCH = tempfile.TemporaryDirectory(prefix="snakepit-tests-")


def scratch_dir() -> str:
    """A fresh private directory (for sockets and token files), removed after the run."""
    return tempfile.mkdtemp(dir=_SCRATCH.name)


@asynccontextmanager
async def running_server(registry: ToolRegistry | None = None) -> AsyncIterator[Any]:
    """A BridgeService on a fresh Unix socket, and a stub talking to it."""
    directory = scratch_dir()
    socket = f"{directory}/w.sock"
    servicer = BridgeServicer("test.0", "test-run", *([registry] if registry else []))
    server = create_server(servicer)
    server.add_insecure_port(f"unix:{socket}")
    await server.start()
    channel = grpc.aio.insecure_channel(f"unix:{socket}")
    try:
        yield pb2_grpc().BridgeServiceStub(channel), servicer
    finally:
        await channel.close()
        await server.stop(grace=None)


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(scenario())


PB2 = pb2()
