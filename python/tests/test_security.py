"""The run token on gRPC, and the scrubbing of secrets from errors and logs."""

import logging

import grpc
import pytest
from conftest import PB2, run, scratch_dir

from snakepit_bridge import security
from snakepit_bridge.errors import error_info
from snakepit_bridge.proto import pb2_grpc
from snakepit_bridge.server import BridgeServicer, create_server

SECRET = "sk-test-0123456789abcdef"


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("MY_PROVIDER_KEY", SECRET)
    monkeypatch.setenv("SNAKEPIT_SECRET_NAMES", "MY_PROVIDER_KEY")


def test_error_messages_and_tracebacks_are_scrubbed(secret_env):
    try:
        raise RuntimeError(f"refused key {SECRET}")
    except RuntimeError as exc:
        info = error_info(PB2, exc)
    assert SECRET not in info.message and "[REDACTED]" in info.message
    assert SECRET not in info.traceback and "[REDACTED]" in info.traceback


def test_log_records_are_scrubbed_including_exceptions(secret_env):
    record = logging.LogRecord("t", logging.WARNING, __file__, 1, "key %s", (SECRET,), None)
    try:
        raise ValueError(SECRET)
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert security.ScrubbingFilter().filter(record)
    formatted = logging.Formatter().format(record)
    assert SECRET not in formatted
    assert formatted.count("[REDACTED]") >= 2


def test_a_token_server_refuses_calls_without_the_token():
    async def scenario():
        directory = scratch_dir()
        server = create_server(BridgeServicer("t.0", "r"), token="right-token")
        server.add_insecure_port(f"unix:{directory}/w.sock")
        await server.start()
        channel = grpc.aio.insecure_channel(f"unix:{directory}/w.sock")
        stub = pb2_grpc().BridgeServiceStub(channel)
        codes = []
        for metadata in [None, (("authorization", "Bearer wrong-token"),)]:
            try:
                await stub.Ping(PB2.PingRequest(), metadata=metadata)
                codes.append("OK")
            except grpc.aio.AioRpcError as exc:
                codes.append(exc.code().name)
        # A streaming method is refused the same way.
        try:
            async for _ in stub.WatchVariables(PB2.WatchVariablesRequest(session_id="s")):
                pass
            codes.append("OK")
        except grpc.aio.AioRpcError as exc:
            codes.append(exc.code().name)
        pong = await stub.Ping(PB2.PingRequest(), metadata=(("authorization", "Bearer right-token"),))
        await channel.close()
        await server.stop(grace=None)
        return codes, pong

    codes, pong = run(scenario)
    assert codes == ["UNAUTHENTICATED"] * 3
    assert pong.run_id == "r"
