"""The fast path's framing, over a real Unix socket."""

import asyncio

from conftest import PB2, run, scratch_dir
from test_dspy import dummy, field

from snakepit_bridge import fastpath
from snakepit_bridge.server import BridgeServicer
from snakepit_bridge.values import from_proto, to_proto

from snakepit_bridge.framing import HEADER, frame


async def read_frame(reader):
    length, request_id, status = HEADER.unpack(await reader.readexactly(HEADER.size))
    return request_id, status, await reader.readexactly(length - 9)


def test_requests_are_answered_by_id_and_bad_frames_get_an_error_status():
    async def scenario():
        path = scratch_dir() + "/f.sock"
        server = await fastpath.start(BridgeServicer("t.0", "r"), PB2, path)
        reader, writer = await asyncio.open_unix_connection(path)
        spec = PB2.SignatureSpec(
            inputs=[field("question", "str")],
            outputs=[field("answer", "str")],
        )
        answers = {f"<q{i}>": {"answer": f"a{i}"} for i in range(3)}
        for i in range(3):
            request = PB2.RunModuleRequest(
                class_path="dspy.Predict",
                signature=spec,
                inputs=to_proto(PB2, {"question": f"<q{i}>"}).map,
                options=PB2.CallOptions(lm=dummy(answers)),
            )
            writer.write(frame(100 + i, fastpath.RUN_MODULE, request.SerializeToString()))
        writer.write(frame(7, 99, b"garbage"))
        await writer.drain()
        replies = {}
        for _ in range(4):
            request_id, status, payload = await read_frame(reader)
            replies[request_id] = (status, payload)
        writer.close()
        server.close()
        return replies

    replies = run(scenario)
    for i in range(3):
        status, payload = replies[100 + i]
        assert status == 0
        response = PB2.CallResponse.FromString(payload)
        assert from_proto(PB2, response.value) == {"answer": f"a{i}"}
    status, payload = replies[7]
    assert status == 1 and payload == b"unknown method 99"


def test_a_connection_from_another_user_is_closed_unread(monkeypatch):
    """The peer check (SO_PEERCRED) compares with the worker's uid; pretend the worker runs as
    another user, so this process's own connection is a stranger's."""
    real_uid = fastpath.os.getuid()
    monkeypatch.setattr(fastpath.os, "getuid", lambda: real_uid + 1)

    async def scenario():
        path = scratch_dir() + "/f.sock"
        server = await fastpath.start(BridgeServicer("t.0", "r"), PB2, path)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(frame(1, fastpath.RUN_MODULE, PB2.RunModuleRequest().SerializeToString()))
        await writer.drain()
        try:
            data = await asyncio.wait_for(reader.read(), 10)
        except ConnectionResetError:
            data = b""
        writer.close()
        server.close()
        return data

    assert run(scenario) == b"", "closed without an answer"


class SlowServicer:
    """Serves RunModule by waiting until released (or cancelled); records both. A request's
    ``class_path`` names it."""

    def __init__(self, result_size: int = 0) -> None:
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.release = asyncio.Event()
        self.result_size = result_size

    async def RunModule(self, request, context):
        self.started.append(request.class_path)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(request.class_path)
            raise
        return PB2.CallResponse(value=to_proto(PB2, "x" * self.result_size or "done"))

    CallInstance = RunModule


def named(name: str) -> bytes:
    return PB2.RunModuleRequest(class_path=name).SerializeToString()


async def until(condition, within: float = 10.0) -> None:
    """Waits until ``condition()`` holds, yielding to the event loop; fails after ``within`` s."""
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the condition never held"
        await asyncio.sleep(0.005)


async def connected(servicer):
    path = scratch_dir() + "/f.sock"
    server = await fastpath.start(servicer, PB2, path)
    reader, writer = await asyncio.open_unix_connection(path)
    return server, reader, writer


def test_a_cancel_frame_stops_the_call_and_the_worker_confirms_it():
    async def scenario():
        servicer = SlowServicer()
        server, reader, writer = await connected(servicer)
        writer.write(frame(5, fastpath.RUN_MODULE, named("a")))
        await writer.drain()
        await until(lambda: servicer.started == ["a"])
        writer.write(frame(5, fastpath.CANCEL, b""))
        await writer.drain()
        reply = await read_frame(reader)
        writer.close()
        server.close()
        return servicer, reply

    servicer, reply = run(scenario)
    assert reply == (5, fastpath.STATUS_CANCELLED, b"")
    assert servicer.cancelled == ["a"], "the handler itself was cancelled"


def test_a_call_cancelled_before_it_started_is_confirmed_once_and_unknown_ids_are_ignored():
    async def scenario():
        servicer = SlowServicer()
        server, reader, writer = await connected(servicer)
        # Request and cancel arrive together: the task is cancelled before its first step.
        writer.write(
            frame(1, fastpath.RUN_MODULE, named("early"))
            + frame(1, fastpath.CANCEL, b"")
            + frame(99, fastpath.CANCEL, b"")
        )
        await writer.drain()
        first = await read_frame(reader)
        servicer.release.set()
        writer.write(frame(2, fastpath.RUN_MODULE, named("late")))
        await writer.drain()
        second = await read_frame(reader)
        writer.close()
        server.close()
        return servicer, first, second

    servicer, first, second = run(scenario)
    assert first == (1, fastpath.STATUS_CANCELLED, b"")
    # Exactly one frame for call 1, none for the unknown 99: the next frame is call 2's answer.
    assert second[:2] == (2, fastpath.STATUS_OK)
    assert "early" not in servicer.started


def test_a_connection_serves_a_bounded_number_of_calls_at_once(monkeypatch):
    monkeypatch.setattr(fastpath, "MAX_TASKS", 2)

    async def scenario():
        servicer = SlowServicer()
        server, reader, writer = await connected(servicer)
        for i in range(3):
            writer.write(frame(i, fastpath.RUN_MODULE, named(f"c{i}")))
        await writer.drain()
        refused = await read_frame(reader)
        servicer.release.set()
        answered = {(await read_frame(reader))[0] for _ in range(2)}
        writer.close()
        server.close()
        return servicer, refused, answered

    servicer, refused, answered = run(scenario)
    assert refused[:2] == (2, fastpath.STATUS_FAILED)
    assert b"already serves 2 calls" in refused[2]
    assert answered == {0, 1}
    assert servicer.started == ["c0", "c1"]


def test_a_result_larger_than_a_frame_becomes_a_typed_error(monkeypatch):
    monkeypatch.setattr(fastpath, "MAX_FRAME", 1000)

    async def scenario():
        servicer = SlowServicer(result_size=5000)
        servicer.release.set()
        server, reader, writer = await connected(servicer)
        writer.write(frame(3, fastpath.RUN_MODULE, named("big")))
        await writer.drain()
        reply = await read_frame(reader)
        writer.close()
        server.close()
        return reply

    request_id, status, payload = run(scenario)
    assert (request_id, status) == (3, fastpath.STATUS_OK)
    assert len(payload) + 9 <= 1000
    response = PB2.CallResponse.FromString(payload)
    assert response.error.kind == PB2.ErrorKind.Value("ERROR_KIND_RESULT_TOO_LARGE")
    assert "(991 bytes)" in response.error.message, response.error.message


def test_replies_wait_for_a_slow_reader_within_a_bound(monkeypatch):
    """Replies do not pile up for a reader that lags: past the bound, finished calls wait to
    write and the connection reads no new requests; once the reader catches up, every call is
    answered exactly once."""
    monkeypatch.setattr(fastpath, "MAX_QUEUED_BYTES", 100_000)

    async def scenario():
        servicer = SlowServicer(result_size=50_000)
        servicer.release.set()
        server, reader, writer = await connected(servicer)
        writer.write(b"".join(frame(i, fastpath.RUN_MODULE, named(f"c{i}")) for i in range(200)))
        await writer.drain()
        await until(lambda: len(fastpath.CONNECTIONS) == 1)
        (connection,) = fastpath.CONNECTIONS
        # The client reads nothing: the kernel's buffer fills, then the transport's, to the bound.
        await until(lambda: connection.queued_bytes() >= 100_000)
        most = connection.queued_bytes()
        for _ in range(50):
            await asyncio.sleep(0)
            most = max(most, connection.queued_bytes())
        waiting = len(connection._tasks)
        answered = []
        while len(answered) < 200:
            answered.append((await read_frame(reader))[0])
        writer.close()
        server.close()
        return most, waiting, answered

    most, waiting, answered = run(scenario)
    assert waiting > 0, "finished calls wait for the reader"
    assert most < 100_000 + 50_100, f"at most one reply over the bound was queued: {most}"
    assert sorted(answered) == list(range(200)), "every call answered once"


def test_on_tcp_nothing_is_served_before_the_run_token():
    """Over TCP the first frame must present the token: anything else closes the connection
    unanswered; with it, the connection serves."""
    token = "t" * 64
    ping = frame(5, 99, b"")

    async def attempt(server_port, first):
        reader, writer = await asyncio.open_connection("127.0.0.1", server_port)
        writer.write(first + ping)
        await writer.drain()
        try:
            data = await asyncio.wait_for(reader.read(), 10)
        except ConnectionResetError:
            data = b""
        writer.close()
        return data

    async def scenario():
        server, port = await fastpath.start_tcp(
            BridgeServicer("t.0", "r"), PB2, "127.0.0.1", token, None
        )
        results = {
            "no token": await attempt(port, b""),
            "a call first": await attempt(
                port, frame(1, fastpath.RUN_MODULE, PB2.RunModuleRequest().SerializeToString())
            ),
            "a wrong token": await attempt(port, frame(1, fastpath.AUTHENTICATE, b"x" * 64)),
            "a huge first frame": await attempt(port, HEADER.pack(1 << 20, 1, 4)),
        }
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(frame(1, fastpath.AUTHENTICATE, token.encode()) + ping)
        await writer.drain()
        answered = [await read_frame(reader), await read_frame(reader)]
        writer.close()
        server.close()
        return results, answered

    results, answered = run(scenario)
    for what, data in results.items():
        assert data == b"", f"{what}: closed without an answer, got {data!r}"
    assert answered[0] == (1, 0, b""), "the token is acknowledged"
    assert answered[1] == (5, 1, b"unknown method 99"), "then frames are served"
