"""A DummyLM that streams its answers slowly, for streaming tests, benchmarks and examples.

``answers`` maps a substring of the last prompt message to a dict of output fields (formatted by
the adapter, like DummyLM's dict mode). The completion streams in pieces of ``chunk_chars``
characters, ``delay_ms`` apart (after a first wait of ``first_delay_ms``, default ``delay_ms``).
With ``events_file``, each piece appends ``chunk <n> <pid>`` to it when produced, and
``cancelled <pid>`` when the stream is abandoned: tests see whether production stopped.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from dspy.clients.engines.dummy_engine import DummyEngine
from dspy.lm15 import response_to_events
from dspy.utils import DummyLM


def _pieces(events: Any, size: int) -> Any:
    """The events of a whole response, its text deltas cut into pieces of ``size`` characters."""
    from dspy._vendor.lm15.types import StreamDeltaEvent, TextDelta

    for event in events:
        delta = getattr(event, "delta", None)
        if isinstance(delta, TextDelta) and len(delta.text) > size:
            for start in range(0, len(delta.text), size):
                yield StreamDeltaEvent(
                    delta=TextDelta(text=delta.text[start : start + size], part_index=delta.part_index)
                )
        else:
            yield event


class _Engine:
    def __init__(self, owner: "StreamLM") -> None:
        self.owner = owner
        self.dummy = DummyEngine(owner)

    def complete(self, request: Any) -> Any:
        return self.dummy.complete(request)

    def stream(self, request: Any) -> Any:
        return _pieces(response_to_events(self.dummy.complete(request)), self.owner.chunk_chars)

    def close(self) -> None:
        pass


class _AsyncEngine:
    def __init__(self, sync: _Engine) -> None:
        self.sync = sync

    async def complete(self, request: Any) -> Any:
        await asyncio.sleep(self.sync.owner.first_delay)
        return self.sync.complete(request)

    async def stream(self, request: Any) -> Any:
        owner = self.sync.owner
        n = 0
        try:
            await asyncio.sleep(owner.first_delay)
            for event in self.sync.stream(request):
                if getattr(event, "type", "") == "delta":
                    if n:
                        await asyncio.sleep(owner.delay)
                    n += 1
                    owner.event(f"chunk {n} {os.getpid()}")
                yield event
        except (asyncio.CancelledError, GeneratorExit):
            owner.event(f"cancelled {os.getpid()}")
            raise

    async def aclose(self) -> None:
        pass


class StreamLM(DummyLM):
    """See the module's documentation."""

    def __init__(
        self,
        answers: dict[str, Any],
        chunk_chars: int = 4,
        delay_ms: float = 20.0,
        first_delay_ms: float | None = None,
        events_file: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(answers, **kwargs)
        self.chunk_chars = max(1, int(chunk_chars))
        self.delay = delay_ms / 1000.0
        self.first_delay = (delay_ms if first_delay_ms is None else first_delay_ms) / 1000.0
        self.events_file = events_file
        self.model = "stream"
        self._engines()

    def _engines(self) -> None:
        self._engine_spec = _Engine(self)
        self._async_engine_spec = _AsyncEngine(self._engine_spec)

    def event(self, line: str) -> None:
        if self.events_file:
            fd = os.open(self.events_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)

    def copy(self, **kwargs: Any) -> "StreamLM":
        copied = super().copy(**kwargs)
        copied._engines()
        return copied
