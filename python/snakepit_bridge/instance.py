"""DSPy behind the bridge: module instances (in sessions, or cached per signature for
session-less calls), their calls and batches. The Rust side is ``bridge/src/api/dspy/instance.rs``.

Nothing here calls ``dspy.configure``: every call runs inside ``dspy.context(lm=..., adapter=...)``
with a copy of its LM, so calls in flight never see each other's settings or history.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import weakref
from typing import Any, AsyncIterator

from snakepit_bridge.definitions import Definitions
from snakepit_bridge.dspy_loading import load_dspy
from snakepit_bridge.errors import InvalidArgument, NotFound
from snakepit_bridge.lm import LmSetup, build_lm
from snakepit_bridge.lru import LruCache
from snakepit_bridge.prediction import HistoryCollector, check_inputs, check_outputs
from snakepit_bridge.signature import build_signature
from snakepit_bridge.state import apply_state, parse_state
from snakepit_bridge.threads import run_in_thread

DEFAULT_BATCH_CONCURRENCY = 16


def _capacity(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


MODULE_CACHE_SIZE = _capacity("SNAKEPIT_MODULE_CACHE", 512)


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

        dspy = load_dspy()
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
        if getattr(cls, "snakepit_context", False):
            # Classes of the bridge itself (``programs.ProgramHost``) work with their session.
            kwargs.update(session=session, runtime=self)
        try:
            return cls(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArgument(f"cannot create {class_path}: {exc}") from None

    # -- calls -------------------------------------------------------------------------------

    def _settings(
        self, lm: LmSetup | None, call_lm: Any, collector: HistoryCollector, callbacks: list[Any]
    ) -> dict[str, Any]:
        dspy = load_dspy()
        settings: dict[str, Any] = {
            "caller_modules": [*(dspy.settings.caller_modules or []), collector],
            # A trace of this call only: DSPy's global one would collect every prediction of the
            # worker's life (modules like BestOfN extend it), mixing concurrent calls.
            "trace": [],
        }
        if callbacks:
            settings["callbacks"] = [*(dspy.settings.get("callbacks") or []), *callbacks]
        if lm is not None:
            settings.update(lm=call_lm, adapter=lm.adapter)
        return settings

    def runs_now(self, target: Any, lm: LmSetup | None) -> bool:
        """Whether a call of ``target`` runs to its end at once, on the event loop (DSPy's sync
        path): only a ``Predict`` or ``ChainOfThought`` with a CPU-only LM. Nothing waits in such
        a call (a module with tools may wait on a Rust callback, which needs the loop)."""
        if lm is None or not lm.cpu_only:
            return False
        dspy = load_dspy()
        return type(target) in (dspy.Predict, dspy.ChainOfThought)

    def call_now(
        self, target: Any, kwargs: dict[str, Any], lm: LmSetup, callbacks: list[Any] | None = None
    ) -> tuple[Any, list[dict[str, Any]]]:
        """``target(**kwargs)`` at once, for a call that ``runs_now``. No other call runs while it
        does, so it uses the LM itself (no per-call copy) and empties the LM's history after."""
        collector = HistoryCollector()
        check_inputs(getattr(target, "signature", None), kwargs)
        dspy = load_dspy()
        try:
            with dspy.context(**self._settings(lm, lm.lm, collector, callbacks or [])):
                result = target(**kwargs)
        finally:
            history = getattr(lm.lm, "history", None)
            if isinstance(history, list):
                history.clear()
        if isinstance(result, dspy.Prediction):
            check_outputs(getattr(target, "signature", None), result, collector.history)
        return result, collector.history

    async def stream(
        self, target: Any, kwargs: dict[str, Any], lm: LmSetup | None
    ) -> AsyncIterator[tuple[Any, ...]]:
        """``target(**kwargs)`` through DSPy's ``streamify``, with a stream listener on each output
        field of its predictors. Yields
        ``("chunk", predictor, field, text, last)`` and ``("status", message)`` as they come, then
        ``("done", prediction, history entries)``. Closing the generator cancels the call."""
        dspy = load_dspy()
        collector = HistoryCollector()
        call_lm = lm.lm.copy() if lm is not None else None
        signature = getattr(target, "signature", None)
        check_inputs(signature, kwargs)
        # Every output field of every predictor (a ChainOfThought's reasoning too), except names
        # two predictors share: DSPy's listeners need to know whose field they follow.
        named = [name for _, p in target.named_predictors() for name in p.signature.output_fields]
        fields = [name for name in dict.fromkeys(named) if named.count(name) == 1]
        listeners = [dspy.streaming.StreamListener(signature_field_name=name) for name in fields]
        try:
            program = dspy.streamify(target, stream_listeners=listeners, is_async_program=True)
        except ValueError:
            # A field no predictor (or more than one) has: stream the result alone.
            program = dspy.streamify(target, is_async_program=True)
        result = None
        with dspy.context(**self._settings(lm, call_lm, collector, [])):
            async for value in program(**kwargs):
                if isinstance(value, dspy.streaming.StreamResponse):
                    yield ("chunk", value.predict_name, value.signature_field_name, value.chunk,
                           value.is_last_chunk)
                elif isinstance(value, dspy.streaming.StatusMessage):
                    yield ("status", value.message)
                elif isinstance(value, dspy.Prediction):
                    result = value
        if result is None:
            raise RuntimeError("the streamed call ended without a prediction")
        check_outputs(signature, result, collector.history)
        yield ("done", result, collector.history)

    async def call(
        self,
        target: Any,
        method: str,
        args: list[Any],
        kwargs: dict[str, Any],
        lm: LmSetup | None,
        callbacks: list[Any] | None = None,
    ) -> tuple[Any, Any]:
        """Calls ``target.method`` (DSPy's async path for modules) inside a per-call LM context.
        Returns the result and the history entries of the call's LM requests."""
        if method in ("", "__call__") and not args and lm is not None and self.runs_now(target, lm):
            return self.call_now(target, kwargs, lm, callbacks)
        dspy = load_dspy()
        collector = HistoryCollector()
        call_lm = lm.lm.copy() if lm is not None else None
        if method in ("", "__call__", "forward") and not args:
            check_inputs(getattr(target, "signature", None), kwargs)
        with dspy.context(**self._settings(lm, call_lm, collector, callbacks or [])):
            if method in ("", "__call__") and _has_async_path(target):
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
        self,
        class_path: str,
        signature_key: bytes,
        spec: Any,
        kwargs: dict[str, Any],
        state_key: bytes = b"",
        state: str = "",
    ) -> Any:
        """The worker's stateless instance of ``class_path`` for a signature (by hash), keyword
        arguments and a tuned state (by hash; ``state.py``); the signature and the state are
        resolved only when the instance is made."""
        if spec is not None and not (spec.outputs or spec.inputs):
            spec = None
        if not signature_key and spec is not None:
            # A client that sends no hash: the definition itself names it.
            signature_key = spec.SerializeToString(deterministic=True)
        arguments = json.dumps(kwargs, sort_keys=True, default=str) if kwargs else ""
        key = (class_path, signature_key, arguments, state_key)
        module = self._modules.get(key)
        if module is None:
            # A module without a signature (a program configured by its arguments) needs none.
            signature = self.signature(signature_key, spec) if signature_key else None
            tuned = (
                self.definitions.resolve("state", state_key, state or None, parse_state)
                if state_key
                else None
            )
            module = self.create(class_path, signature, [], dict(kwargs), {}, None)
            if tuned is not None:
                apply_state(module, tuned)
            self._modules.put(key, module)
        return module


# The modules inside each cached module, found once: walking them costs ~10 µs, on every call.
_HISTORY_OWNERS: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()


def _history_owners(module: Any) -> list[Any]:
    owners = [module]
    named = getattr(module, "named_sub_modules", None)
    if callable(named):
        owners.extend(sub for _, sub in named())
    return owners


def forget_history(module: Any) -> None:
    """Empties the ``history`` of a module and of every module inside it. For cached stateless
    modules: DSPy keeps the last requests, whole prompts included, on every module that took
    part, and a cached module lives as long as the worker; each call's own history is collected
    separately."""
    try:
        owners = _HISTORY_OWNERS.get(module)
        if owners is None:
            owners = _HISTORY_OWNERS.setdefault(module, _history_owners(module))
    except TypeError:  # not weakly referenceable or not hashable: walk it each time
        owners = _history_owners(module)
    for owner in owners:
        history = getattr(owner, "history", None)
        if isinstance(history, list):
            history.clear()


def _has_async_path(target: Any) -> bool:
    """Whether ``acall`` works: modules without ``aforward`` (BestOfN, Refine, ...) only run in
    a thread, through ``__call__``."""
    if not hasattr(target, "acall"):
        return False
    try:
        return callable(getattr(target, "aforward", None))
    except AttributeError:
        return False
