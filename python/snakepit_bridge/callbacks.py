"""The reverse direction: Python calling tools that Rust registered for a session."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

from snakepit_bridge.errors import CallbackFailed, NotFound


class RemoteToolError(CallbackFailed):
    """The Rust tool ran and failed."""


_END = object()


class CallbackChannel:
    """One session's callback stream: requests go out on ``outgoing``, results resolve futures."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.outgoing: asyncio.Queue[Any] = asyncio.Queue()
        self.tools: dict[str, Any] = {}
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._streams: dict[int, asyncio.Queue[Any]] = {}
        self._ids = itertools.count(1)
        self.closed = False

    def _check(self, tool_name: str) -> Any:
        if self.closed:
            raise CallbackFailed(f"the callback stream of session {self.session_id!r} is closed")
        if tool_name not in self.tools:
            raise NotFound(
                f"no Rust tool named {tool_name!r} in session {self.session_id!r}; "
                f"registered: {', '.join(sorted(self.tools)) or 'none'}"
            )
        return self.tools[tool_name]

    async def call(self, tool_name: str, arguments: dict[str, Any]) -> Any:
        """Calls a Rust tool and returns its result (a streaming tool's pieces as a list)."""
        if getattr(self._check(tool_name), "streaming", False):
            return [piece async for piece in self.stream(tool_name, arguments)]
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        await self.outgoing.put(("request", call_id, tool_name, arguments))
        try:
            return await future
        except asyncio.CancelledError:
            # The caller went away: Rust stops the tool.
            if not future.done():
                self.outgoing.put_nowait(("cancel", call_id))
            raise
        finally:
            self._pending.pop(call_id, None)

    async def stream(self, tool_name: str, arguments: dict[str, Any]) -> AsyncIterator[Any]:
        """The pieces of a streaming Rust tool as Rust sends them. Closing the iterator early
        (or cancelling its reader) stops the tool in Rust."""
        self._check(tool_name)
        call_id = next(self._ids)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._streams[call_id] = queue
        await self.outgoing.put(("request", call_id, tool_name, arguments))
        finished = False
        try:
            while True:
                kind, value = await queue.get()
                if kind == "chunk":
                    yield value
                elif kind == "error":
                    finished = True
                    raise value
                else:
                    finished = True
                    return
        finally:
            self._streams.pop(call_id, None)
            if not finished and not self.closed:
                self.outgoing.put_nowait(("cancel", call_id))

    def push(self, call_id: int, value: Any) -> None:
        """One piece of a streaming call."""
        queue = self._streams.get(call_id)
        if queue is not None:
            queue.put_nowait(("chunk", value))

    def resolve(self, call_id: int, value: Any = None, error: BaseException | None = None) -> None:
        queue = self._streams.get(call_id)
        if queue is not None:
            queue.put_nowait(("error", error) if error is not None else ("end", None))
            return
        future = self._pending.get(call_id)
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def close(self) -> None:
        self.closed = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(
                    CallbackFailed(f"the callback stream of session {self.session_id!r} closed")
                )
        self._pending.clear()
        for queue in self._streams.values():
            queue.put_nowait(
                ("error", CallbackFailed(f"the callback stream of session {self.session_id!r} closed"))
            )
        self.outgoing.put_nowait(None)
