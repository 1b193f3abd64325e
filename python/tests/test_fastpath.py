"""The fast path's framing, over a real Unix socket."""

import asyncio
import struct
import tempfile

from conftest import PB2, run
from test_dspy import dummy, field

from snakepit_bridge import fastpath
from snakepit_bridge.server import BridgeServicer
from snakepit_bridge.values import from_proto, to_proto

HEADER = struct.Struct("<IQB")


def frame(request_id, method, payload):
    return HEADER.pack(len(payload) + 9, request_id, method) + payload


async def read_frame(reader):
    length, request_id, status = HEADER.unpack(await reader.readexactly(HEADER.size))
    return request_id, status, await reader.readexactly(length - 9)


def test_requests_are_answered_by_id_and_bad_frames_get_an_error_status():
    async def scenario():
        path = tempfile.mkdtemp(prefix="snakepit-fast-") + "/f.sock"
        server = await fastpath.start(BridgeServicer("t.0", "r"), PB2, path)
        reader, writer = await asyncio.open_unix_connection(path)
        spec = PB2.SignatureSpec(
            inputs=[field("question", {"type": "string"})],
            outputs=[field("answer", {"type": "string"})],
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
    assert status == 1 and payload.startswith(b"KeyError")


def test_a_connection_from_another_user_is_closed_unread(monkeypatch):
    """The peer check (SO_PEERCRED) compares with the worker's uid; pretend the worker runs as
    another user, so this process's own connection is a stranger's."""
    real_uid = fastpath.os.getuid()
    monkeypatch.setattr(fastpath.os, "getuid", lambda: real_uid + 1)

    async def scenario():
        path = tempfile.mkdtemp(prefix="snakepit-fast-") + "/f.sock"
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
