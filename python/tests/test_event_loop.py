"""The worker's event loop: a selector that polls briefly before it blocks."""

import asyncio
import socket
import time

from snakepit_bridge import event_loop
from snakepit_bridge.event_loop import SpinningSelector, new_event_loop


def test_ready_events_are_returned_while_spinning_and_a_timeout_still_holds():
    selector = SpinningSelector(0.05)
    a, b = socket.socketpair()
    try:
        selector.register(a, event_loop.selectors.EVENT_READ)
        started = time.monotonic()
        assert selector.select(0.2) == [], "nothing to read: it waits out the timeout"
        assert time.monotonic() - started >= 0.2 - 0.01
        b.send(b"x")
        ready = selector.select(None)
        assert [key.fileobj for key, _ in ready] == [a]
    finally:
        selector.close()
        a.close()
        b.close()


def test_a_zero_timeout_never_spins():
    selector = SpinningSelector(10.0)
    try:
        started = time.monotonic()
        assert selector.select(0) == []
        assert time.monotonic() - started < 1.0
    finally:
        selector.close()


def test_it_spins_only_while_no_call_is_in_progress():
    """Spinning burns CPU for the window; with calls in progress it blocks at once."""

    def cpu_spent(should_spin):
        selector = SpinningSelector(0.2, should_spin=should_spin)
        try:
            started = time.thread_time()
            assert selector.select(0.2) == []
            return time.thread_time() - started
        finally:
            selector.close()

    assert cpu_spent(lambda: True) > 0.05, "idle: it polls through the window"
    assert cpu_spent(lambda: False) < 0.05, "calls waiting: it blocks without spinning"


def test_the_spin_is_configurable_and_zero_turns_it_off(monkeypatch):
    monkeypatch.setenv("SNAKEPIT_SPIN_US", "0")
    loop = new_event_loop()
    assert not isinstance(getattr(loop, "_selector", None), SpinningSelector)
    loop.close()
    monkeypatch.setenv("SNAKEPIT_SPIN_US", "150")
    assert event_loop.spin_seconds() == 150e-6
    loop = new_event_loop()
    assert isinstance(loop._selector, SpinningSelector)

    async def roundtrip():
        reader, writer = await asyncio.open_connection(*server_address)
        writer.write(b"ping\n")
        line = await reader.readline()
        writer.close()
        return line

    async def serve():
        async def echo(reader, writer):
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()

        return await asyncio.start_server(echo, "127.0.0.1", 0)

    server = loop.run_until_complete(serve())
    server_address = server.sockets[0].getsockname()[:2]
    try:
        assert loop.run_until_complete(roundtrip()) == b"ping\n"
    finally:
        server.close()
        loop.close()
