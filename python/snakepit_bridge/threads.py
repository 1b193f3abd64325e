"""The worker's own thread pool, for blocking work: sync tools and modules that only run in a
thread (BestOfN, Refine, ...).

It is separate from asyncio's default executor (which the event loop itself uses, e.g. for name
resolution) and sized by ``SNAKEPIT_THREADS`` (default 16), so blocking calls cannot starve the
loop's own needs and their number is bounded. A call waiting on a thread that is cancelled waits
for the thread to finish before it ends as cancelled: a thread cannot be stopped, and the worker
confirms a cancel only when nothing of the call runs any more.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def _size() -> int:
    try:
        return max(1, int(os.environ.get("SNAKEPIT_THREADS", "16")))
    except ValueError:
        return 16


_EXECUTOR: ThreadPoolExecutor | None = None


def executor() -> ThreadPoolExecutor:
    """The pool, made on first use (after a fork server's fork, never before)."""
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = ThreadPoolExecutor(max_workers=_size(), thread_name_prefix="snakepit-call")
    return _EXECUTOR


async def run_in_thread(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` in the worker's thread pool, with the caller's context
    variables (DSPy's per-call settings live in them)."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    future = loop.run_in_executor(
        executor(), functools.partial(context.run, function, *args, **kwargs)
    )
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        # The thread runs on regardless: report the cancel only once it is done.
        await asyncio.wait([future])
        raise
