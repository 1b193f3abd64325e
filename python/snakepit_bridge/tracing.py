"""Spans of one call, recorded in the worker and returned to the caller, which re-emits them under
its own span (W3C trace context on the wire: ``CallOptions.traceparent``).

Every call that carries a trace context gets it in the worker's log lines (``trace_id=...``). A
call that also asks for spans (``CallOptions.record_spans``: the caller exports traces) gets a
``dspy.worker`` span around the whole call, a span per module call, adapter step and LM request
(through DSPy's callbacks, switched on for that call only), and each log record made during a span
as an event of it. The worker exports nothing itself: its spans travel back in the response.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import time
from typing import Any

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")

# The span a log record or a new span belongs to, in this call's context.
_current: contextvars.ContextVar["Span | None"] = contextvars.ContextVar(
    "snakepit_current_span", default=None
)
# The trace id of the call being served, for log lines (also when no spans are recorded).
_trace_id: contextvars.ContextVar[str] = contextvars.ContextVar("snakepit_trace_id", default="")

# Bounds what one call can send back.
MAX_SPANS = 256
MAX_EVENTS = 64


class Span:
    """One recorded span."""

    __slots__ = ("trace", "id", "parent_id", "name", "start", "end", "attributes", "events", "error")

    def __init__(self, trace: "CallTrace", name: str, parent: "Span | None", attributes: dict[str, Any]):
        self.trace = trace
        self.id = os.urandom(8)
        self.parent_id = parent.id if parent is not None else b""
        self.name = name
        self.start = time.time_ns()
        self.end = 0
        self.attributes = attributes
        self.events: list[tuple[str, int, dict[str, Any]]] = []
        self.error = ""

    def finish(self, error: BaseException | None = None) -> None:
        self.end = time.time_ns()
        if error is not None:
            self.error = f"{type(error).__name__}: {error}"


class CallTrace:
    """The spans of one call."""

    def __init__(self, trace_id: str) -> None:
        self.trace_id = trace_id
        self.spans: list[Span] = []

    def start(self, name: str, **attributes: Any) -> tuple[Span | None, contextvars.Token | None]:
        """Starts a span under the current one and makes it current (for this context)."""
        if len(self.spans) >= MAX_SPANS:
            return None, None
        parent = _current.get()
        span = Span(self, name, parent if parent is not None and parent.trace is self else None, attributes)
        self.spans.append(span)
        return span, _current.set(span)

    def to_proto(self, pb2: Any, to_proto_value: Any) -> list[Any]:
        out = []
        for span in self.spans:
            message = pb2.WorkerSpan(
                id=span.id,
                parent_id=span.parent_id,
                name=span.name,
                start_unix_nanos=span.start,
                end_unix_nanos=span.end or time.time_ns(),
                error=span.error,
            )
            for key, value in span.attributes.items():
                message.attributes.entries.add(key=key, value=to_proto_value(pb2, value))
            for name, at, attributes in span.events:
                event = message.events.add(name=name, time_unix_nanos=at)
                for key, value in attributes.items():
                    event.attributes.entries.add(key=key, value=to_proto_value(pb2, value))
            out.append(message)
        return out


def parse_traceparent(value: str) -> str:
    """The trace id of a W3C ``traceparent``, or ``""`` when it is missing or malformed."""
    match = _TRACEPARENT.match(value or "")
    return match.group(1) if match else ""


class Traced:
    """Context of one served call: sets the trace id for log lines and, when spans are asked for,
    records the ``dspy.worker`` span around the call."""

    __slots__ = ("trace", "root", "_tokens")

    def __init__(self, options: Any, name: str, **attributes: Any) -> None:
        trace_id = parse_traceparent(getattr(options, "traceparent", ""))
        self.trace: CallTrace | None = None
        self.root: Span | None = None
        self._tokens: list[tuple[contextvars.ContextVar[Any], contextvars.Token]] = []
        if not trace_id:
            return
        self._tokens.append((_trace_id, _trace_id.set(trace_id)))
        if getattr(options, "record_spans", False):
            self.trace = CallTrace(trace_id)
            self._tokens.append((_current, _current.set(None)))
            self.root, token = self.trace.start(name, **attributes)
            if token is not None:
                self._tokens.append((_current, token))

    def __enter__(self) -> "Traced":
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        if self.root is not None and not self.root.end:
            self.root.finish(error)
        for var, token in reversed(self._tokens):
            try:
                var.reset(token)
            except ValueError:
                # A token made in another context (a call that moved to a task): just clear it.
                var.set(var.get() if var is _current else "")
        self._tokens.clear()

    def callbacks(self) -> list[Any]:
        """DSPy callbacks that record module, adapter and LM spans, when spans are asked for."""
        return [_span_callback_class()(self.trace)] if self.trace is not None else []


def _tokens_of(entry: dict[str, Any] | None) -> dict[str, Any]:
    usage = (entry or {}).get("usage") or {}
    out: dict[str, Any] = {}
    for key, name in (("prompt_tokens", "gen_ai.usage.input_tokens"), ("completion_tokens", "gen_ai.usage.output_tokens")):
        value = usage.get(key)
        if isinstance(value, (int, float)):
            out[name] = int(value)
    return out


def _callback_base() -> type:
    from dspy.utils.callback import BaseCallback

    return BaseCallback


_SPAN_CALLBACK: type | None = None


def _span_callback_class() -> type:
    """The DSPy callback class that records spans, made on first use (DSPy is imported lazily)."""
    global _SPAN_CALLBACK
    if _SPAN_CALLBACK is not None:
        return _SPAN_CALLBACK

    class _SpanCallback(_callback_base()):  # type: ignore[misc]
        """A span per DSPy module call, adapter format/parse and LM request."""

        def __init__(self, trace: CallTrace) -> None:
            self.trace = trace
            self.open: dict[str, tuple[Span, contextvars.Token]] = {}
            self.lms: dict[str, Any] = {}

        def _start(self, call_id: str, name: str, **attributes: Any) -> None:
            span, token = self.trace.start(name, **attributes)
            if span is not None and token is not None:
                self.open[call_id] = (span, token)

        def _end(self, call_id: str, exception: BaseException | None, **attributes: Any) -> None:
            opened = self.open.pop(call_id, None)
            if opened is None:
                return
            span, token = opened
            span.attributes.update(attributes)
            span.finish(exception)
            try:
                _current.reset(token)
            except ValueError:
                _current.set(self.trace.spans[0] if self.trace.spans else None)

        def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
            self._start(call_id, f"dspy.module {type(instance).__name__}")

        def on_module_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
            self._end(call_id, exception)

        def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
            self._start(call_id, "dspy.lm", **{"gen_ai.request.model": str(getattr(instance, "model", ""))})
            self.lms[call_id] = instance

        def on_lm_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
            history = getattr(self.lms.pop(call_id, None), "history", None)
            tokens = _tokens_of(history[-1]) if isinstance(history, list) and history else {}
            self._end(call_id, exception, **tokens)

        def on_adapter_format_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
            self._start(call_id, f"dspy.adapter.format {type(instance).__name__}")

        def on_adapter_format_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
            self._end(call_id, exception)

        def on_adapter_parse_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
            self._start(call_id, f"dspy.adapter.parse {type(instance).__name__}")

        def on_adapter_parse_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
            self._end(call_id, exception)

        def on_tool_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
            self._start(call_id, f"dspy.tool {getattr(instance, 'name', type(instance).__name__)}")

        def on_tool_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
            self._end(call_id, exception)

    _SPAN_CALLBACK = _SpanCallback
    return _SpanCallback


class TraceContextFilter(logging.Filter):
    """Gives every log record ``trace_id`` (empty outside a traced call), and adds the record as
    an event of the current span when spans are recorded."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.trace_id = _trace_id.get()
        span = _current.get()
        if span is not None and len(span.events) < MAX_EVENTS:
            span.events.append(
                (
                    "log",
                    int(record.created * 1e9),
                    {"level": record.levelname, "logger": record.name, "message": record.getMessage()},
                )
            )
        return True


def install_log_context() -> None:
    """Adds ``trace_id`` to every log line of the worker (after the message: ``trace_id=...``)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(TraceContextFilter())
        formatter = handler.formatter
        fmt = getattr(formatter, "_fmt", None) or "%(asctime)s %(levelname)s %(name)s: %(message)s"
        if "trace_id" not in fmt:
            handler.setFormatter(logging.Formatter(fmt + " trace_id=%(trace_id)s"))
