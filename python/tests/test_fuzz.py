"""Hostile bytes: the worker's request decoding, the fast path's framing and the gRPC server,
fuzzed with hypothesis. Nothing may crash or hang; the worker keeps serving."""

import asyncio

import grpc
from conftest import PB2, run, scratch_dir
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snakepit_bridge import fastpath
from snakepit_bridge.errors import BridgeError
from snakepit_bridge.framing import HEADER
from snakepit_bridge.framing import frame as _frame
from snakepit_bridge.proto import pb2_grpc
from snakepit_bridge.server import BridgeServicer, create_server
from snakepit_bridge.values import from_proto, to_proto

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def value_messages():
    """Bytes that decode as a ``Value`` often enough to reach the conversion: a valid value with
    bytes flipped, cut or appended, or arbitrary bytes."""
    plain = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text() | st.binary(),
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=5), children, max_size=4),
        max_leaves=20,
    )
    valid = plain.map(lambda v: to_proto(PB2, v).SerializeToString())
    mutated = st.tuples(valid, st.integers(0, 64), st.binary(max_size=8)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]) :]
    )
    return valid | mutated | st.binary(max_size=512)


@FUZZ
@given(value_messages())
def test_value_decoding_never_fails_other_than_typed(data):
    try:
        message = PB2.Value.FromString(data)
    except DecodeError:
        return
    try:
        from_proto(PB2, message)
    except BridgeError:
        pass


@FUZZ
@given(
    st.sampled_from(["RunModuleRequest", "CallInstanceRequest", "ExecuteToolRequest", "CreateInstanceRequest"]),
    st.binary(max_size=512),
)
def test_request_messages_decode_or_raise_decode_error(name, data):
    try:
        getattr(PB2, name).FromString(data)
    except DecodeError:
        pass


def _valid_request():
    return PB2.RunModuleRequest(class_path="no_such_module.Thing").SerializeToString()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=64),  # raw noise, including broken headers
            st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 255), st.binary(max_size=256)).map(
                lambda t: _frame(*t)
            ),  # well-framed requests with random methods and payloads
        ),
        max_size=6,
    )
)
def test_the_fast_path_survives_hostile_connections(chunks):
    # asyncio only logs an exception that escapes a protocol callback (and drops the
    # connection), so watch the callbacks: each connection must end, and none may fail.
    failures: list[BaseException] = []
    ended = []
    original_received = fastpath.FastConnection.data_received
    original_lost = fastpath.FastConnection.connection_lost

    def received(self, data):
        try:
            original_received(self, data)
        except BaseException as exc:
            failures.append(exc)
            raise

    def lost(self, exc):
        ended.append(True)
        original_lost(self, exc)

    async def scenario():
        path = scratch_dir() + "/f.sock"
        server = await fastpath.start(BridgeServicer("t.0", "r"), PB2, path)
        try:
            _, writer = await asyncio.open_unix_connection(path)
            for chunk in chunks:
                writer.write(chunk)
            await writer.drain()
            writer.close()
            # The hostile connection did not take the server down: a new one is served.
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(_frame(42, fastpath.RUN_MODULE, _valid_request()))
            await writer.drain()
            header = await asyncio.wait_for(reader.readexactly(HEADER.size), 10)
            length, request_id, status = HEADER.unpack(header)
            payload = await reader.readexactly(length - 9)
            writer.close()
            deadline = asyncio.get_running_loop().time() + 10
            while len(ended) < 2:
                assert asyncio.get_running_loop().time() < deadline, "a handler never ended"
                await asyncio.sleep(0.005)
            return request_id, status, payload
        finally:
            server.close()

    fastpath.FastConnection.data_received = received
    fastpath.FastConnection.connection_lost = lost
    try:
        request_id, status, payload = run(scenario)
    finally:
        fastpath.FastConnection.data_received = original_received
        fastpath.FastConnection.connection_lost = original_lost
    assert failures == [], f"a connection handler failed: {failures!r}"
    assert (request_id, status) == (42, 0)
    response = PB2.CallResponse.FromString(payload)
    assert response.WhichOneof("result") == "error"
    assert response.error.kind == PB2.ERROR_KIND_NOT_FOUND


METHODS = ["Ping", "InitializeSession", "ExecuteTool", "RunModule", "CallInstance", "CreateInstance", "GetVariable"]


def test_the_grpc_server_answers_hostile_requests_with_a_status():
    """300 requests of random bytes (mutated valid requests and noise) to every unary method, on
    one server (grpc.aio binds to one event loop, so the examples come from a seeded generator)."""
    import random

    rng = random.Random(20261125)
    valid = _valid_request()

    def hostile() -> bytes:
        if rng.random() < 0.5:
            return rng.randbytes(rng.randrange(0, 300))
        data = bytearray(valid)
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)

    async def scenario():
        directory = scratch_dir()
        server = create_server(BridgeServicer("t.0", "test-run"))
        server.add_insecure_port(f"unix:{directory}/w.sock")
        await server.start()
        channel = grpc.aio.insecure_channel(f"unix:{directory}/w.sock")
        try:
            statuses = set()
            for i in range(300):
                method = METHODS[i % len(METHODS)]
                raw = channel.unary_unary(f"/snakepit.bridge.v1.BridgeService/{method}")
                try:
                    await asyncio.wait_for(raw(hostile()), 10)
                    statuses.add("OK")
                except grpc.aio.AioRpcError as exc:
                    statuses.add(f"{exc.code().name}: {exc.details()}")
            stub = pb2_grpc().BridgeServiceStub(channel)
            return statuses, await stub.Ping(PB2.PingRequest())
        finally:
            await channel.close()
            await server.stop(grace=None)

    statuses, pong = run(scenario)
    # A request is either decoded and answered (errors travel inside the response) or refused as
    # undecodable before any handler ran; anything else (a handler that raised, a hang) fails.
    assert "OK" in statuses, statuses
    refused = statuses - {"OK"}
    assert refused, "some requests were undecodable"
    for status in refused:
        assert status.startswith(
            "UNKNOWN: Unexpected <class 'google.protobuf.message.DecodeError'>"
        ), status
    assert pong.run_id == "test-run"
