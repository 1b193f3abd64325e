"""The worker's own thread pool, and the bounded caches."""

import asyncio
import threading

from conftest import run

from snakepit_bridge import threads
from snakepit_bridge.lru import LruCache


def test_a_cancelled_thread_call_ends_only_after_its_thread_is_done():
    finished = threading.Event()
    entered = threading.Event()
    proceed = threading.Event()

    def blocking() -> str:
        entered.set()
        proceed.wait(10)
        finished.set()
        return "done"

    async def scenario():
        task = asyncio.ensure_future(threads.run_in_thread(blocking))
        while not entered.is_set():
            await asyncio.sleep(0.005)
        task.cancel()
        await asyncio.sleep(0)
        still_waiting = not task.done()
        proceed.set()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return still_waiting, task.cancelled(), finished.is_set()

    still_waiting, cancelled, finished_first = run(scenario)
    assert still_waiting, "the cancel waits for the thread"
    assert cancelled and finished_first


def test_thread_calls_see_the_callers_context_and_run_in_the_workers_own_pool():
    import contextvars

    var = contextvars.ContextVar("var", default="unset")

    async def scenario():
        var.set("caller")
        return await threads.run_in_thread(lambda: (var.get(), threading.current_thread().name))

    value, thread_name = run(scenario)
    assert value == "caller"
    assert thread_name.startswith("snakepit-call")


def test_the_lru_cache_keeps_the_most_recently_used_entries():
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)
    assert "b" not in cache and "a" in cache and "c" in cache
    assert len(cache) == 2
