"""The tool registry: Python functions that Rust can call by name.

```python
from snakepit_bridge import tool

@tool(description="Adds two numbers.")
def add(a: int, b: int = 1) -> int:
    return a + b

@tool
async def countdown(n: int):
    for i in range(n, 0, -1):
        yield i          # a streaming tool: each value is one chunk
```

A tool may declare a parameter named ``ctx`` (annotated :class:`ToolContext`): it receives the
session id, :meth:`ToolContext.call_rust` to call tools that Rust registered for the session, and
:meth:`ToolContext.stream_rust` to read a streaming Rust tool piece by piece. Called through
``ExchangeTool``, one parameter receives a stream from Rust: an async iterator of its items.
Synchronous tools run in a thread so they never block the worker's event loop.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from snakepit_bridge.errors import InvalidArgument, NotFound
from snakepit_bridge.threads import run_in_thread

CONTEXT_PARAMETER = "ctx"


class ToolContext:
    """What a running tool knows about its call."""

    def __init__(self, session_id: str, callbacks: Any | None) -> None:
        self.session_id = session_id
        self._callbacks = callbacks

    async def call_rust(self, tool_name: str, **arguments: Any) -> Any:
        """Calls the Rust tool ``tool_name`` registered for this session and returns its result."""
        from snakepit_bridge.errors import CallbackFailed

        if self._callbacks is None:
            raise CallbackFailed(
                f"session {self.session_id!r} has no Rust tools registered (no callback stream)"
            )
        return await self._callbacks.call(tool_name, arguments)

    async def stream_rust(self, tool_name: str, **arguments: Any) -> AsyncIterator[Any]:
        """The pieces of the streaming Rust tool ``tool_name`` as Rust sends them; leaving the
        loop early stops the tool in Rust."""
        from snakepit_bridge.errors import CallbackFailed

        if self._callbacks is None:
            raise CallbackFailed(
                f"session {self.session_id!r} has no Rust tools registered (no callback stream)"
            )
        async for piece in self._callbacks.stream(tool_name, arguments):
            yield piece


def _type_name(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "Any"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


_CHECKED = {int: (int,), float: (int, float), str: (str,), bool: (bool,), bytes: (bytes,)}


def _check(name: str, annotation: Any, value: Any) -> None:
    """Checks plain builtin annotations (and lists/dicts of them) so that a wrong type is a clear
    InvalidArgument instead of an error deep inside the tool."""
    if value is None or annotation in (inspect.Parameter.empty, Any):
        return
    origin = typing.get_origin(annotation)
    if origin in (list, dict):
        expected = origin
    elif annotation in _CHECKED:
        expected = _CHECKED[annotation]
        if annotation is int and isinstance(value, bool):
            raise InvalidArgument(f"argument {name!r} must be int, got bool")
    else:
        return
    if not isinstance(value, expected):
        raise InvalidArgument(
            f"argument {name!r} must be {_type_name(annotation)}, got {type(value).__name__}"
        )


@dataclass
class Tool:
    name: str
    description: str
    function: Callable[..., Any]
    streaming: bool
    wants_context: bool
    parameters: list[inspect.Parameter] = field(default_factory=list)
    hints: dict[str, Any] = field(default_factory=dict)

    def bind(self, arguments: dict[str, Any]) -> dict[str, Any]:
        known = {p.name for p in self.parameters}
        unknown = sorted(set(arguments) - known)
        if unknown:
            raise InvalidArgument(
                f"tool {self.name!r} has no parameter(s) {', '.join(unknown)}; "
                f"it takes: {', '.join(sorted(known)) or 'nothing'}"
            )
        for p in self.parameters:
            if p.name not in arguments and p.default is inspect.Parameter.empty:
                raise InvalidArgument(f"tool {self.name!r} needs argument {p.name!r}")
            if p.name in arguments:
                _check(p.name, self.hints.get(p.name, p.annotation), arguments[p.name])
        return arguments

    async def call(self, ctx: ToolContext, arguments: dict[str, Any]) -> Any:
        kwargs = self.bind(arguments)
        if self.wants_context:
            kwargs = {**kwargs, CONTEXT_PARAMETER: ctx}
        if inspect.iscoroutinefunction(self.function):
            return await self.function(**kwargs)
        return await run_in_thread(self.function, **kwargs)

    async def stream(self, ctx: ToolContext, arguments: dict[str, Any]) -> AsyncIterator[Any]:
        kwargs = self.bind(arguments)
        if self.wants_context:
            kwargs = {**kwargs, CONTEXT_PARAMETER: ctx}
        if inspect.isasyncgenfunction(self.function):
            async for chunk in self.function(**kwargs):
                yield chunk
            return
        iterator = iter(await run_in_thread(self.function, **kwargs))
        sentinel = object()
        while True:
            chunk = await run_in_thread(next, iterator, sentinel)
            if chunk is sentinel:
                return
            yield chunk


class ToolRegistry:
    """Tools by name."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def register(
        self, function: Callable[..., Any], name: str | None = None, description: str | None = None
    ) -> Tool:
        signature = inspect.signature(function)
        try:
            hints = typing.get_type_hints(function)
        except Exception:  # unresolvable forward references: fall back to raw annotations
            hints = {}
        parameters = [p for n, p in signature.parameters.items() if n != CONTEXT_PARAMETER]
        for p in parameters:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
                raise TypeError(f"tool parameters must be named: {function.__name__}({p})")
        entry = Tool(
            name=name or function.__name__,
            description=description or inspect.getdoc(function) or "",
            function=function,
            streaming=inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function),
            wants_context=CONTEXT_PARAMETER in signature.parameters,
            parameters=parameters,
            hints=hints,
        )
        self._tools[entry.name] = entry
        return entry

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise NotFound(
                f"no tool named {name!r}; registered: {', '.join(sorted(self._tools)) or 'none'}"
            ) from None

    def all(self) -> list[Tool]:
        return [self._tools[name] for name in sorted(self._tools)]


REGISTRY = ToolRegistry()


def tool(
    function: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Any:
    """Registers a function as a tool; usable as ``@tool`` or ``@tool(name=..., description=...)``."""

    def register(f: Callable[..., Any]) -> Callable[..., Any]:
        REGISTRY.register(f, name=name, description=description)
        return f

    return register(function) if function is not None else register


def tool_spec(pb2: Any, entry: Tool) -> Any:
    from snakepit_bridge.values import to_proto

    spec = pb2.ToolSpec(name=entry.name, description=entry.description, streaming=entry.streaming)
    for p in entry.parameters:
        param = spec.parameters.add(
            name=p.name,
            type=_type_name(entry.hints.get(p.name, p.annotation)),
            required=p.default is inspect.Parameter.empty,
        )
        if p.default is not inspect.Parameter.empty:
            try:
                param.default.CopyFrom(to_proto(pb2, p.default))
            except Exception:
                pass  # a default that cannot cross the wire is simply not advertised
    return spec
