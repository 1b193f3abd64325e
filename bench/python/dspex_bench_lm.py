"""A benchmark-only LM: waits a fixed time (asyncio.sleep on DSPy's async path, time.sleep on its
sync path), then answers like DummyLM with one fixed answer."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from dspy.clients.engines.dummy_engine import DummyEngine
from dspy.utils import DummyLM


class _SleepingEngine:
    def __init__(self, inner: DummyEngine, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    def complete(self, request: Any) -> Any:
        time.sleep(self.delay)
        return self.inner.complete(request)

    def complete_legacy(self, lm: Any, request: Any, **context: Any) -> Any:
        time.sleep(self.delay)
        return self.inner.complete_legacy(lm, request, **context)

    def stream(self, request: Any) -> Any:
        return self.inner.stream(request)

    def close(self) -> None:
        pass


class _AsyncSleepingEngine:
    def __init__(self, inner: DummyEngine, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    async def complete(self, request: Any) -> Any:
        await asyncio.sleep(self.delay)
        return self.inner.complete(request)

    async def complete_legacy(self, lm: Any, request: Any, **context: Any) -> Any:
        await asyncio.sleep(self.delay)
        return self.inner.complete_legacy(lm, request, **context)

    async def stream(self, request: Any) -> Any:
        for event in self.inner.stream(request):
            yield event

    async def aclose(self) -> None:
        pass


class SleepyLM(DummyLM):
    """Sleeps ``delay_ms`` per request, then returns ``answer`` (a dict of output fields)."""

    def __init__(self, answer: dict[str, Any], delay_ms: float = 20.0, adapter: Any = None) -> None:
        super().__init__([answer], adapter=adapter)
        self.answers = itertools.repeat(answer)
        self.delay = delay_ms / 1000.0
        self._wrap()

    def _wrap(self) -> None:
        engine = DummyEngine(self)
        self._engine_spec = _SleepingEngine(engine, self.delay)
        self._async_engine_spec = _AsyncSleepingEngine(engine, self.delay)

    def copy(self, **kwargs: Any) -> SleepyLM:
        copied = super().copy(**kwargs)
        copied._wrap()
        return copied
