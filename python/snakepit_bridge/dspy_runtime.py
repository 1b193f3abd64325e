"""DSPy behind the bridge: signatures from specs, LMs, module instances, calls, batches.

DSPy is imported on first use, so a worker that only runs tools starts without it. Nothing here
calls ``dspy.configure``: every call runs inside ``dspy.context(lm=..., adapter=...)`` with a copy of
its LM, so calls in flight never see each other's settings or history.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from snakepit_bridge.definitions import Definitions
from snakepit_bridge.errors import BridgeError, InvalidArgument, NotFound
from snakepit_bridge.lru import LruCache
from snakepit_bridge.threads import run_in_thread

DEFAULT_BATCH_CONCURRENCY = 16
_SECTION = re.compile(r"\[\[ ## (\w+) ## \]\]")


class ParseFailed(BridgeError):
    """The LM answered something that does not fit the signature."""

    kind_name = "ERROR_KIND_PARSE_FAILED"

    def __init__(self, message: str, field: str, raw_output: str) -> None:
        super().__init__(message)
        self.field = field
        self.raw_output = raw_output


_dspy_ready = False


def _dspy() -> Any:
    global _dspy_ready
    import dspy

    if not _dspy_ready:
        _bound_global_history()
        _dspy_ready = True
    return dspy


def _bound_global_history() -> None:
    """DSPy keeps, per process, the last 10,000 LM requests (prompts and responses) in a global
    list and in the ``history`` of every module and LM that took part, plus a global trace of the
    last 10,000 predictions. A long-lived worker then holds tens of megabytes for nothing (the soak
    test saw a worker grow by 20%), and every prompt lingers. Each call's own history is collected
    separately, so a worker keeps the last ``SNAKEPIT_DSPY_HISTORY`` requests (default 200); the
    trace is per call (see ``DspyRuntime.call``)."""
    from dspy.clients import base_lm

    # The module, not the `settings` object that `dspy.dsp.utils` exports under the same name.
    settings = importlib.import_module("dspy.dsp.utils.settings")
    try:
        size = max(1, int(os.environ.get("SNAKEPIT_DSPY_HISTORY", "200")))
    except ValueError:
        size = 200
    base_lm.MAX_HISTORY_SIZE = size
    del base_lm.GLOBAL_HISTORY[:-size]
    with settings.global_lock:
        settings.main_thread_config["max_history_size"] = size


# -- signatures ----------------------------------------------------------------------------------


def _capacity(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


MODULE_CACHE_SIZE = _capacity("SNAKEPIT_MODULE_CACHE", 512)


def build_signature(pb2: Any, spec: Any) -> Any:
    """A ``dspy.Signature`` for a ``SignatureSpec`` (callers keep it: see ``definitions.py``)."""
    from snakepit_bridge.field_types import TypeBuilder

    dspy = _dspy()
    if not spec.outputs:
        raise InvalidArgument(f"signature {spec.name!r} has no output field")
    types = TypeBuilder(spec.objects)
    fields: dict[str, Any] = {}
    for kind, specs in (("input", spec.inputs), ("output", spec.outputs)):
        for f in specs:
            annotation = types.annotation(f.type)
            extra: dict[str, Any] = {}
            if f.description:
                extra["desc"] = f.description
            if f.prefix:
                extra["prefix"] = f.prefix
            maker = dspy.InputField if kind == "input" else dspy.OutputField
            if f.name in fields:
                raise InvalidArgument(f"signature {spec.name!r} has two fields named {f.name!r}")
            fields[f.name] = (annotation, maker(**extra))
    signature = dspy.Signature(fields, spec.instructions or "")
    if spec.name:
        signature.__name__ = spec.name
    return signature


# -- LMs ------------------------------------------------------------------------------------------


_ADAPTERS = {"": "ChatAdapter", "chat": "ChatAdapter", "json": "JSONAdapter", "xml": "XMLAdapter"}


@dataclass
class LmSetup:
    lm: Any
    adapter: Any
    # An LM that never waits on I/O (DSPy's DummyLM). Its calls are pure CPU, so the worker runs
    # DSPy's sync path inline: it holds the event loop about half as long as the async path
    # would (0.9 ms against 1.8 ms per Predict), and async could not overlap anything anyway.
    cpu_only: bool = False


def build_lm(pb2: Any, config: Any) -> LmSetup:
    from snakepit_bridge.values import from_proto

    dspy = _dspy()
    if config.adapter not in _ADAPTERS:
        raise InvalidArgument(f"unknown adapter {config.adapter!r}; use chat, json or xml")
    name = _ADAPTERS[config.adapter]
    # No silent JSON fallback: it costs a second LM call and hides which answer failed to parse.
    adapter = (
        dspy.ChatAdapter(use_json_adapter_fallback=False)
        if name == "ChatAdapter"
        else getattr(dspy, name)()
    )
    kind = config.WhichOneof("kind")
    if kind == "dummy":
        from dspy.utils import DummyLM

        answers = from_proto(pb2, config.dummy.answers)
        if not isinstance(answers, (list, dict)):
            raise InvalidArgument("DummyLM answers must be a list or a map")
        return LmSetup(DummyLM(answers, adapter=adapter), adapter, cpu_only=True)
    if kind == "litellm":
        c = config.litellm
        kwargs: dict[str, Any] = {}
        if c.api_base:
            kwargs["api_base"] = c.api_base
        if c.api_key_env:
            from snakepit_bridge.security import add_secret_names

            add_secret_names(c.api_key_env)
            key = os.environ.get(c.api_key_env)
            if key is None:
                raise InvalidArgument(
                    f"the API key variable {c.api_key_env} is not set in the worker's environment"
                )
            kwargs["api_key"] = key
        if c.HasField("temperature"):
            kwargs["temperature"] = c.temperature
        if c.HasField("max_tokens"):
            kwargs["max_tokens"] = c.max_tokens
        if c.HasField("cache"):
            kwargs["cache"] = c.cache
        return LmSetup(dspy.LM(c.model, **kwargs), adapter)
    if kind == "custom":
        from snakepit_bridge.values import map_from_proto

        module_name, _, attribute = config.custom.class_path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError, ValueError) as exc:
            raise NotFound(f"cannot load LM class {config.custom.class_path!r}: {exc}") from None
        kwargs = map_from_proto(pb2, config.custom.kwargs)
        if "adapter" in inspect.signature(cls).parameters:
            kwargs.setdefault("adapter", adapter)
        return LmSetup(cls(**kwargs), adapter)
    raise InvalidArgument("an LM configuration needs `dummy`, `litellm` or `custom`")


class DspyRuntime:
    """The worker's DSPy state: its default LM and the stateless module cache."""

    def __init__(self, pb2: Any) -> None:
        self.pb2 = pb2
        self._default_config: Any = None
        self._default: LmSetup | None = None
        self._modules: LruCache[tuple[str, bytes, str], Any] = LruCache(MODULE_CACHE_SIZE)
        self.definitions = Definitions()
        path = os.environ.get("SNAKEPIT_DSPY_LM_FILE")
        if path:
            config = pb2.LmConfig()
            with open(path, "rb") as settings:
                config.ParseFromString(settings.read())
            self._default_config = config

    def has_default_lm(self) -> bool:
        return self._default_config is not None

    def default_lm(self) -> LmSetup | None:
        if self._default is None and self._default_config is not None:
            self._default = build_lm(self.pb2, self._default_config)
        return self._default

    def lm_for(self, override: Any, instance_lm: LmSetup | None) -> LmSetup:
        if override is not None and override.WhichOneof("kind"):
            return build_lm(self.pb2, override)
        setup = instance_lm or self.default_lm()
        if setup is None:
            raise InvalidArgument(
                "no LM: configure one for the pool (BridgeBuilder::lm), the module instance, "
                "or the call (CallOptions::lm)"
            )
        return setup

    # -- objects -----------------------------------------------------------------------------

    def resolve_class(self, path: str) -> Any:
        module_name, _, attribute = path.rpartition(".")
        if not module_name:
            raise InvalidArgument(f"{path!r} is not a dotted path like `dspy.Predict`")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise NotFound(f"cannot import module {module_name!r} for {path!r}: {exc}") from None
        try:
            return getattr(module, attribute)
        except AttributeError:
            raise NotFound(f"module {module_name!r} has no attribute {attribute!r}") from None

    def resolve_arguments(self, value: Any, objects: dict[str, Any]) -> Any:
        from snakepit_bridge.values import ObjectHandle

        if isinstance(value, ObjectHandle):
            try:
                return objects[value.id]
            except KeyError:
                raise NotFound(f"no object {value.id!r} in this session") from None
        if isinstance(value, list):
            return [self.resolve_arguments(v, objects) for v in value]
        if isinstance(value, dict):
            return {k: self.resolve_arguments(v, objects) for k, v in value.items()}
        return value

    def resolve_tools(self, names: list[Any], session: Any) -> list[Any]:
        from snakepit_bridge.tools import REGISTRY, ToolContext

        dspy = _dspy()
        tools = []
        for name in names:
            if not isinstance(name, str):
                tools.append(name)
                continue
            callbacks = session.callbacks if session is not None else None
            if callbacks is not None and name in callbacks.tools:
                spec = callbacks.tools[name]

                def make_remote(channel: Any, tool_name: str) -> Any:
                    async def remote(**kwargs: Any) -> Any:
                        return await channel.call(tool_name, kwargs)

                    return remote

                tools.append(
                    dspy.Tool(
                        make_remote(callbacks, name),
                        name=name,
                        desc=spec.description or name,
                        args={},
                    )
                )
                continue
            entry = REGISTRY.get(name)
            ctx = ToolContext(session.session_id if session else "", callbacks)

            def make_local(e: Any, context: ToolContext) -> Any:
                async def local(**kwargs: Any) -> Any:
                    return await e.call(context, kwargs)

                return local

            args = {p.name: {} for p in entry.parameters}
            tools.append(
                dspy.Tool(make_local(entry, ctx), name=name, desc=entry.description, args=args)
            )
        return tools

    def signature(self, key: bytes, spec: Any) -> Any:
        """The ``dspy.Signature`` the hash ``key`` names: kept, or built from ``spec`` (which may be
        None when the client trusts the worker to hold it: then ``UnknownDefinition``)."""
        if spec is not None and not (spec.outputs or spec.inputs):
            spec = None
        return self.definitions.resolve(
            "signature", key, spec, lambda s: build_signature(self.pb2, s)
        )

    def create(
        self,
        class_path: str,
        signature: Any,
        args: list[Any],
        kwargs: dict[str, Any],
        objects: dict[str, Any],
        session: Any,
    ) -> Any:
        """An instance of ``class_path``; a built ``signature`` (if any) is its first argument."""
        cls = self.resolve_class(class_path)
        args = self.resolve_arguments(args, objects)
        kwargs = self.resolve_arguments(kwargs, objects)
        if "tools" in kwargs and isinstance(kwargs["tools"], list):
            kwargs["tools"] = self.resolve_tools(kwargs["tools"], session)
        for key in ("reward_fn", "metric"):
            # A Python tool named by string stands in for a callable (BestOfN, Refine, ...).
            if isinstance(kwargs.get(key), str):
                from snakepit_bridge.tools import REGISTRY

                kwargs[key] = REGISTRY.get(kwargs[key]).function
        if signature is not None:
            args = [signature, *args]
        try:
            return cls(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArgument(f"cannot create {class_path}: {exc}") from None

    # -- calls -------------------------------------------------------------------------------

    async def call(
        self,
        target: Any,
        method: str,
        args: list[Any],
        kwargs: dict[str, Any],
        lm: LmSetup | None,
    ) -> tuple[Any, Any]:
        """Calls ``target.method`` (DSPy's async path for modules) inside a per-call LM context.
        Returns the result and the LM copy that recorded the call's history."""
        dspy = _dspy()
        call_lm = lm.lm.copy() if lm is not None else None
        collector = HistoryCollector()
        settings: dict[str, Any] = {
            "caller_modules": [*(dspy.settings.caller_modules or []), collector],
            # A trace of this call only: DSPy's global one would collect every prediction of the
            # worker's life (modules like BestOfN extend it), mixing concurrent calls.
            "trace": [],
        }
        if call_lm is not None:
            settings.update(lm=call_lm, adapter=lm.adapter)
        if method in ("", "__call__", "forward") and not args:
            check_inputs(getattr(target, "signature", None), kwargs)
        with dspy.context(**settings):
            if method in ("", "__call__") and _inline(target, lm):
                result = target(*args, **kwargs)
            elif method in ("", "__call__") and _has_async_path(target):
                result = await target.acall(*args, **kwargs)
            else:
                function = getattr(target, method or "__call__", None)
                if function is None or not callable(function):
                    raise NotFound(f"{type(target).__name__} has no method {method!r}")
                if inspect.iscoroutinefunction(function):
                    result = await function(*args, **kwargs)
                else:
                    result = await run_in_thread(function, *args, **kwargs)
                    if inspect.isawaitable(result):
                        result = await result
        if isinstance(result, dspy.Prediction):
            check_outputs(getattr(target, "signature", None), result, collector.history)
        return result, collector.history

    def module_for(
        self, class_path: str, signature_key: bytes, spec: Any, kwargs: dict[str, Any]
    ) -> Any:
        """The worker's stateless instance of ``class_path`` for a signature (by hash) and
        keyword arguments; the signature is resolved only when the instance is made."""
        if spec is not None and not (spec.outputs or spec.inputs):
            spec = None
        if not signature_key and spec is not None:
            # A client that sends no hash: the definition itself names it.
            signature_key = spec.SerializeToString(deterministic=True)
        arguments = json.dumps(kwargs, sort_keys=True, default=str) if kwargs else ""
        key = (class_path, signature_key, arguments)
        module = self._modules.get(key)
        if module is None:
            # A module without a signature (a program configured by its arguments) needs none.
            signature = self.signature(signature_key, spec) if signature_key else None
            module = self.create(class_path, signature, [], dict(kwargs), {}, None)
            self._modules.put(key, module)
        return module


def forget_history(module: Any) -> None:
    """Empties the ``history`` of a module and of every module inside it. For cached stateless
    modules: DSPy keeps the last requests, whole prompts included, on every module that took
    part, and a cached module lives as long as the worker; each call's own history is collected
    separately."""
    history = getattr(module, "history", None)
    if isinstance(history, list):
        history.clear()
    named = getattr(module, "named_sub_modules", None)
    if callable(named):
        for _, sub in named():
            history = getattr(sub, "history", None)
            if isinstance(history, list):
                history.clear()


def _inline(target: Any, lm: LmSetup | None) -> bool:
    """Whether to run DSPy's sync path on the event loop: only for a CPU-only LM and modules that
    call nothing but the LM (a module with tools may wait on a Rust callback, which needs the loop)."""
    if lm is None or not lm.cpu_only:
        return False
    dspy = _dspy()
    return type(target) in (dspy.Predict, dspy.ChainOfThought)


def _has_async_path(target: Any) -> bool:
    """Whether ``acall`` works: modules without ``aforward`` (BestOfN, Refine, ...) only run in
    a thread, through ``__call__``."""
    if not hasattr(target, "acall"):
        return False
    try:
        return callable(getattr(target, "aforward", None))
    except AttributeError:
        return False


def _optional(annotation: Any) -> bool:
    import typing

    return type(None) in typing.get_args(annotation)


class HistoryCollector:
    """Collects the history entry of every LM request made during one call, including those of LM
    copies that modules make themselves (BestOfN, Refine, ...): DSPy appends each entry to the
    ``history`` of every object in ``settings.caller_modules``. (A DSPy callback would see them
    too, but switches on DSPy's callback machinery for every module call, which costs ~0.3 ms.)"""

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []


def check_outputs(signature: Any, prediction: Any, entries: list[dict[str, Any]]) -> None:
    """What DSPy lets through but a typed bridge may not, as parse errors naming the field:
    None (or 'None') for a required str field, text that is not UTF-8, and NaN or infinity
    anywhere in a field (JSON has no such numbers, and no Rust caller expects them)."""
    if signature is None:
        return
    for name, info in signature.output_fields.items():
        value = prediction.get(name) if hasattr(prediction, "get") else None
        if info.annotation is str and not _optional(info.annotation):
            if value is None or value == "None":
                raise ParseFailed(
                    f"the LM gave no value for output field {name!r}", name, last_output(entries)
                )
        problem = _unfit_value(value)
        if problem:
            raise ParseFailed(
                f"the LM's answer for output field {name!r} {problem}", name, last_output(entries)
            )


def check_inputs(signature: Any, inputs: dict[str, Any]) -> None:
    """Refuses an input whose value does not fit its field's declared type, before DSPy renders it
    into a prompt (DSPy would otherwise fail deep inside its formatter, or send nonsense to the LM).
    Values are only checked, never converted; undeclared names are DSPy's business (``config``...)."""
    if signature is None or not hasattr(signature, "input_fields"):
        return
    adapters = signature.__dict__.get("_snakepit_input_adapters")
    if adapters is None:
        from pydantic import TypeAdapter

        adapters = {}
        for name, info in signature.input_fields.items():
            try:
                adapters[name] = TypeAdapter(info.annotation)
            except Exception:  # an annotation pydantic cannot check: leave it to DSPy
                pass
        try:
            signature._snakepit_input_adapters = adapters
        except (AttributeError, TypeError):
            pass
    for name, value in inputs.items():
        adapter = adapters.get(name)
        if adapter is None:
            continue
        try:
            adapter.validate_python(value)
        except Exception as exc:
            first = str(exc).splitlines()
            detail = first[2].strip() if len(first) > 2 else str(exc)
            raise InvalidArgument(
                f"input field {name!r} does not fit its declared type: {detail}"
            ) from None


def _unfit_value(value: Any) -> str:
    """Why a parsed output value cannot be a typed answer, or ''."""
    todo = [value]
    seen = 0
    while todo and seen < 1_000_000:
        item = todo.pop()
        seen += 1
        if isinstance(item, float) and not math.isfinite(item):
            return f"is not a finite number ({item})"
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "is not valid UTF-8 text"
        elif isinstance(item, dict):
            todo.extend(item.values())
            todo.extend(item.keys())
        elif isinstance(item, (list, tuple)):
            todo.extend(item)
        elif hasattr(item, "model_dump") and not isinstance(item, type):
            todo.append(item.model_dump())
    return ""


def last_output(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return ""
    outputs = entries[-1].get("outputs") or []
    first = outputs[0] if outputs else ""
    if isinstance(first, dict):
        return str(first.get("text", first))
    return str(first)


def failing_field(signature: Any, raw: str) -> str:
    """The first output field that is missing from or does not parse in a raw completion."""
    from dspy.adapters.utils import parse_value

    sections: dict[str, str] = {}
    try:
        parsed = json.loads(raw)
        if isinstance(parsed, dict):
            sections = {k: v for k, v in parsed.items()}
    except (ValueError, TypeError):
        parts = _SECTION.split(raw)
        for i in range(1, len(parts) - 1, 2):
            sections[parts[i]] = parts[i + 1].strip()
    for name, info in signature.output_fields.items():
        if name not in sections:
            return name
        try:
            parse_value(sections[name], info.annotation)
        except Exception:
            return name
    return ""


def parse_failure(exc: Any) -> ParseFailed:
    raw = str(getattr(exc, "lm_response", "") or "")
    signature = getattr(exc, "signature", None)
    field_name = failing_field(signature, raw) if signature is not None else ""
    where = f" in field {field_name!r}" if field_name else ""
    return ParseFailed(f"the LM's answer does not fit the signature{where}", field_name, raw)


@dataclass
class CallRecord:
    usage: dict[str, int] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def record_of(entries: list[dict[str, Any]]) -> CallRecord:
    record = CallRecord(usage={"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
    for entry in entries:
        usage = entry.get("usage") or {}
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            value = usage.get(key) or 0
            record.usage[key] += int(value) if isinstance(value, (int, float)) else 0
        outputs = []
        for o in entry.get("outputs") or []:
            outputs.append(str(o.get("text", o)) if isinstance(o, dict) else str(o))
        record.history.append(
            {
                "messages": entry.get("messages") or [],
                "outputs": outputs,
                "model": str(entry.get("model") or ""),
            }
        )
    record.usage["lm_calls"] = len(entries)
    return record
