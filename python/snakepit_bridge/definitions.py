"""Definitions a worker holds by hash: signatures, and modules' tuned states (``state.py``).

A definition crosses once: requests name it by the SHA-256 of its encoded message (computed by
the Rust side, once per process), and carry the definition itself only after the worker answered
``UnknownDefinition``. The worker keeps the most recently used ones (``SNAKEPIT_DEFINITIONS``,
default 512) and builds each once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from snakepit_bridge.errors import UnknownDefinition
from snakepit_bridge.lru import LruCache


def _capacity() -> int:
    try:
        return max(1, int(os.environ.get("SNAKEPIT_DEFINITIONS", "512")))
    except ValueError:
        return 512


class Definitions:
    """Built definitions by hash, bounded (least recently used evicted)."""

    def __init__(self, capacity: int | None = None) -> None:
        self._built: LruCache[bytes, Any] = LruCache(capacity or _capacity())

    def __len__(self) -> int:
        return len(self._built)

    def resolve(self, kind: str, key: bytes, definition: Any, build: Callable[[Any], Any]) -> Any:
        """The built definition named ``key``: from the cache, else built from ``definition`` (and
        kept), else ``UnknownDefinition``."""
        built = self._built.get(key) if key else None
        if built is not None:
            return built
        if definition is None:
            raise UnknownDefinition(kind, key)
        built = build(definition)
        if key:
            self._built.put(key, built)
        return built
