"""An LM for the reliability tests: DummyLM's dict mode, plus the faults a real provider has.

``answers`` maps a substring of the last prompt message to either a dict of output fields (formatted
by the adapter, like DummyLM) or a string, returned verbatim as the raw completion (for outputs that
do not fit). In a raw string, ``<INVALID-UTF8>`` becomes two bytes that are not UTF-8, decoded the
way Python decodes undecodable bytes (``surrogateescape``), and ``<MB-OF-GARBAGE>`` one megabyte of
noise.

``delay_ms`` sleeps before each answer (asyncio on DSPy's async path). While ``fail_file`` exists,
every request raises ``ConnectionError`` like an unreachable provider. Each request appends one line
to ``count_file``, so tests count LM requests across worker processes.

``events_file`` records each request's life on DSPy's async path, one line per event, appended
atomically (``O_APPEND``) by every worker: ``start <question> <pid>`` when the request begins and
``end <question> <pid> done|cancelled`` when it answers or is abandoned (its task cancelled). The
question is the ``<qN>`` marker of the prompt. Tests read from it how many requests of one call ran
at once and whether any is still running.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from typing import Any

from dspy.clients.engines.dummy_engine import DummyEngine
from dspy.utils import DummyLM


def _expand(raw: str) -> str:
    raw = raw.replace("<INVALID-UTF8>", b"\xff\xfe".decode("utf-8", "surrogateescape"))
    if "<MB-OF-GARBAGE>" in raw:
        rng = random.Random(7)
        noise = "".join(chr(rng.randrange(0x20, 0x7F)) for _ in range(1 << 20))
        raw = raw.replace("<MB-OF-GARBAGE>", noise)
    return raw


class _Engine:
    def __init__(self, lm: FaultyLM) -> None:
        self.lm = lm
        self.inner = DummyEngine(lm)

    def complete(self, request: Any) -> Any:
        self.lm._before_request()
        time.sleep(self.lm.delay)
        return self.inner.complete(request)

    def complete_legacy(self, lm: Any, request: Any, **context: Any) -> Any:
        self.lm._before_request()
        time.sleep(self.lm.delay)
        return self.inner.complete_legacy(lm, request, **context)

    def stream(self, request: Any) -> Any:
        return self.inner.stream(request)

    def close(self) -> None:
        pass


_QUESTION = re.compile(r"<q\d+>")


def _question(request: Any) -> str:
    """The last ``<qN>`` marker in a request (the question of its last message), or ``-``."""
    found = _QUESTION.findall(str(request))
    return found[-1] if found else "-"


class _AsyncEngine:
    def __init__(self, sync: _Engine) -> None:
        self.sync = sync

    async def _wait(self, request: Any) -> None:
        lm = self.sync.lm
        lm._before_request()
        if not lm.events_file:
            await asyncio.sleep(lm.delay)
            return
        question = _question(request)
        lm._event(f"start {question} {os.getpid()}")
        try:
            await asyncio.sleep(lm.delay)
        except asyncio.CancelledError:
            lm._event(f"end {question} {os.getpid()} cancelled")
            raise
        lm._event(f"end {question} {os.getpid()} done")

    async def complete(self, request: Any) -> Any:
        await self._wait(request)
        return self.sync.inner.complete(request)

    async def complete_legacy(self, lm: Any, request: Any, **context: Any) -> Any:
        await self._wait(context.get("messages") or request)
        return self.sync.inner.complete_legacy(lm, request, **context)

    async def stream(self, request: Any) -> Any:
        for event in self.sync.stream(request):
            yield event

    async def aclose(self) -> None:
        pass


class FaultyLM(DummyLM):
    def __init__(
        self,
        answers: dict[str, Any],
        delay_ms: float = 0.0,
        fail_file: str | None = None,
        count_file: str | None = None,
        events_file: str | None = None,
        adapter: Any = None,
    ) -> None:
        super().__init__(answers, adapter=adapter)
        self.delay = delay_ms / 1000.0
        self.fail_file = fail_file
        self.count_file = count_file
        self.events_file = events_file
        self._wrap()

    def _event(self, line: str) -> None:
        fd = os.open(self.events_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def _wrap(self) -> None:
        engine = _Engine(self)
        self._engine_spec = engine
        self._async_engine_spec = _AsyncEngine(engine)

    def _before_request(self) -> None:
        if self.count_file:
            with open(self.count_file, "a") as f:
                f.write(f"{os.getpid()}\n")
        if self.fail_file and os.path.exists(self.fail_file):
            raise ConnectionError("the LM provider is unreachable (test fault)")

    def _format_answer_fields(self, field_names_and_values: Any) -> str:
        if isinstance(field_names_and_values, str):
            return _expand(field_names_and_values)
        return super()._format_answer_fields(field_names_and_values)

    def copy(self, **kwargs: Any) -> FaultyLM:
        copied = super().copy(**kwargs)
        copied._wrap()
        return copied
