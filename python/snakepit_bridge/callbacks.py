"""The reverse direction: Python calling tools that Rust registered for a session."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from snakepit_bridge.errors import CallbackFailed, NotFound


class RemoteToolError(CallbackFailed):
    """The Rust tool ran and failed."""


class CallbackChannel:
    """One session's callback stream: requests go out on ``outgoing``, results resolve futures."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.outgoing: asyncio.Queue[Any] = asyncio.Queue()
        self.tools: dict[str, Any] = {}
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self.closed = False

    async def call(self, tool_name: str, arguments: dict[str, Any]) -> Any:
        if self.closed:
            raise CallbackFailed(f"the callback stream of session {self.session_id!r} is closed")
        if tool_name not in self.tools:
            raise NotFound(
                f"no Rust tool named {tool_name!r} in session {self.session_id!r}; "
                f"registered: {', '.join(sorted(self.tools)) or 'none'}"
            )
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        await self.outgoing.put(("request", call_id, tool_name, arguments))
        try:
            return await future
        finally:
            self._pending.pop(call_id, None)

    def resolve(self, call_id: int, value: Any = None, error: BaseException | None = None) -> None:
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
        self.outgoing.put_nowait(None)
