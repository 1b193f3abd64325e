"""The worker's event loop: asyncio's own, whose selector first polls for a short while before it
blocks.

A worker serving sequential calls sleeps between a reply and the next request, which arrives a
few hundred microseconds later; falling asleep and being woken costs tens of microseconds each
way, and the next call then runs on cold caches (measured under ``dspex-bench overhead``). For
``SNAKEPIT_SPIN_US`` microseconds (default 200; 0 turns it off) after it runs out of work, the
selector polls without blocking, so a request that arrives soon is picked up at once. It spins
only when no call is in progress (``should_spin``): a worker whose calls wait (on an LM, a tool)
blocks at once, leaving the core to the processes that have work. A busy worker never spins (it has
ready callbacks, so asyncio asks for a poll with no wait), and the spin is bounded, so an idle
worker costs nothing.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import time
from typing import Any, Callable


def spin_seconds() -> float:
    """How long the selector polls before it blocks, from ``SNAKEPIT_SPIN_US``."""
    try:
        return max(0.0, float(os.environ.get("SNAKEPIT_SPIN_US", "200"))) / 1e6
    except ValueError:
        return 200e-6


class SpinningSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The platform's default selector, polling for ``spin`` seconds before a blocking wait."""

    def __init__(self, spin: float, should_spin: Callable[[], bool] = lambda: True) -> None:
        super().__init__()
        self._spin = spin
        self._should_spin = should_spin

    def select(self, timeout: float | None = None) -> list[Any]:
        if self._spin <= 0 or (timeout is not None and timeout <= 0) or not self._should_spin():
            return super().select(timeout)
        deadline = time.monotonic() + (self._spin if timeout is None else min(self._spin, timeout))
        while True:
            ready = super().select(0)
            if ready or time.monotonic() >= deadline:
                break
        if ready:
            return ready
        remaining = None if timeout is None else max(0.0, timeout - self._spin)
        return super().select(remaining)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An event loop for a worker (see the module's doc)."""
    spin = spin_seconds()
    if spin <= 0:
        return asyncio.new_event_loop()
    from snakepit_bridge import fastpath

    return asyncio.SelectorEventLoop(SpinningSelector(spin, fastpath.idle))
