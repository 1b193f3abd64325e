"""LMs from their wire configuration: DSPy's DummyLM, LiteLLM models and custom classes, with
the adapter that formats prompts. The Rust side is ``bridge/src/lm.rs``."""

from __future__ import annotations

import importlib
import inspect
import os
from dataclasses import dataclass
from typing import Any

from snakepit_bridge.dspy_loading import load_dspy
from snakepit_bridge.errors import InvalidArgument, NotFound

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

    dspy = load_dspy()
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
        if c.HasField("kwargs"):
            from snakepit_bridge.values import map_from_proto

            # Any other keyword of dspy.LM (top_p, num_retries, ...); the named fields win.
            kwargs = {**map_from_proto(pb2, c.kwargs), **kwargs}
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
