"""The gRPC service end to end, over a real Unix socket."""

import asyncio

from conftest import PB2, run, running_server

from snakepit_bridge.tools import ToolRegistry
from snakepit_bridge.values import from_proto, to_proto


def registry():
    r = ToolRegistry()

    async def echo(value=None):
        return value

    def fail(message: str):
        raise ValueError(message)

    async def count(n: int):
        for i in range(n):
            yield i

    async def ask_rust(ctx, name: str, x: int):
        return await ctx.call_rust(name, x=x)

    for f in (echo, fail, count, ask_rust):
        r.register(f)
    return r


def args(**kwargs):
    return to_proto(PB2, kwargs).map


def test_ping_names_the_worker():
    async def scenario():
        async with running_server() as (stub, _):
            return await stub.Ping(PB2.PingRequest())

    pong = run(scenario)
    assert pong.worker_id == "test.0" and pong.run_id == "test-run"
    assert pong.protocol == "snakepit.bridge.v1"


def test_sessions_are_created_read_and_cleaned():
    async def scenario():
        async with running_server() as (stub, servicer):
            created = await stub.InitializeSession(
                PB2.InitializeSessionRequest(session_id="s", metadata={"k": "v"})
            )
            again = await stub.InitializeSession(PB2.InitializeSessionRequest(session_id="s"))
            got = await stub.GetSession(PB2.SessionRequest(session_id="s"))
            await stub.CleanupSession(PB2.SessionRequest(session_id="s"))
            gone = await stub.GetSession(PB2.SessionRequest(session_id="s"))
            return created, again, got, gone, len(servicer.sessions)

    created, again, got, gone, left = run(scenario)
    assert created.session.metadata["k"] == "v"
    assert again.error.kind == PB2.ERROR_KIND_ALREADY_EXISTS
    assert got.session.session_id == "s"
    assert gone.error.kind == PB2.ERROR_KIND_SESSION_NOT_FOUND
    assert left == 0


def test_tools_answer_and_exceptions_come_back_structured():
    async def scenario():
        async with running_server(registry()) as (stub, _):
            ok = await stub.ExecuteTool(
                PB2.ExecuteToolRequest(tool_name="echo", arguments=args(value=[1, "a"]))
            )
            bad = await stub.ExecuteTool(
                PB2.ExecuteToolRequest(tool_name="fail", arguments=args(message="boom"))
            )
            missing = await stub.ExecuteTool(PB2.ExecuteToolRequest(tool_name="nope"))
            return ok, bad, missing

    ok, bad, missing = run(scenario)
    assert from_proto(PB2, ok.value) == [1, "a"]
    assert bad.error.kind == PB2.ERROR_KIND_PYTHON_EXCEPTION
    assert (bad.error.type, bad.error.message) == ("ValueError", "boom")
    assert 'raise ValueError(message)' in bad.error.traceback
    assert missing.error.kind == PB2.ERROR_KIND_NOT_FOUND


def test_streaming_tools_send_chunks_then_done():
    async def scenario():
        async with running_server(registry()) as (stub, _):
            call = stub.ExecuteStreamingTool(
                PB2.ExecuteToolRequest(tool_name="count", arguments=args(n=4))
            )
            return [m async for m in call]

    messages = run(scenario)
    assert [from_proto(PB2, m.chunk) for m in messages[:-1]] == [0, 1, 2, 3]
    assert messages[-1].WhichOneof("kind") == "done"


def test_many_calls_are_served_concurrently():
    # Each call waits until all 20 are in the server at once: served one at a time, the first
    # would wait forever (and time out).
    async def scenario():
        r = ToolRegistry()
        arrived = 0
        everyone = asyncio.Event()

        async def gather_all(i: int):
            nonlocal arrived
            arrived += 1
            if arrived == 20:
                everyone.set()
            await asyncio.wait_for(everyone.wait(), 10)
            return i

        r.register(gather_all)
        async with running_server(r) as (stub, _):
            replies = await asyncio.gather(
                *[
                    stub.ExecuteTool(
                        PB2.ExecuteToolRequest(tool_name="gather_all", arguments=args(i=i))
                    )
                    for i in range(20)
                ]
            )
            return replies

    replies = run(scenario)
    assert [r.WhichOneof("result") for r in replies] == ["value"] * 20
    assert [from_proto(PB2, r.value) for r in replies] == list(range(20))


def test_a_python_tool_calls_back_a_rust_tool_over_the_callback_stream():
    async def scenario():
        async with running_server(registry()) as (stub, _):
            await stub.InitializeSession(PB2.InitializeSessionRequest(session_id="cb"))
            outgoing: asyncio.Queue = asyncio.Queue()
            await outgoing.put(
                PB2.CallbackClientMessage(open=PB2.CallbackOpen(session_id="cb"))
            )
            await outgoing.put(
                PB2.CallbackClientMessage(
                    register=PB2.CallbackRegister(tool=PB2.ToolSpec(name="double"))
                )
            )

            async def requests():
                while True:
                    message = await outgoing.get()
                    if message is None:
                        return
                    yield message

            stream = stub.ToolCallbacks(requests())

            async def serve_rust_side():
                async for message in stream:
                    if message.WhichOneof("kind") == "request":
                        x = from_proto(PB2, PB2.Value(map=message.request.arguments))["x"]
                        await outgoing.put(
                            PB2.CallbackClientMessage(
                                result=PB2.CallbackResult(
                                    call_id=message.request.call_id, value=to_proto(PB2, x * 2)
                                )
                            )
                        )
                    elif message.WhichOneof("kind") == "registered":
                        registered.set()

            registered = asyncio.Event()
            rust_side = asyncio.create_task(serve_rust_side())
            await registered.wait()
            reply = await stub.ExecuteTool(
                PB2.ExecuteToolRequest(
                    session_id="cb", tool_name="ask_rust", arguments=args(name="double", x=21)
                )
            )
            unknown = await stub.ExecuteTool(
                PB2.ExecuteToolRequest(
                    session_id="cb", tool_name="ask_rust", arguments=args(name="triple", x=1)
                )
            )
            await outgoing.put(None)
            await rust_side
            return reply, unknown

    reply, unknown = run(scenario)
    assert from_proto(PB2, reply.value) == 42
    assert unknown.error.kind == PB2.ERROR_KIND_NOT_FOUND


def test_variables_over_the_wire_with_watch():
    async def scenario():
        async with running_server() as (stub, _):
            await stub.InitializeSession(PB2.InitializeSessionRequest(session_id="v"))
            reg = await stub.RegisterVariable(
                PB2.RegisterVariableRequest(
                    session_id="v",
                    name="t",
                    type=PB2.VARIABLE_TYPE_FLOAT,
                    initial_value=to_proto(PB2, 0.5),
                    constraints=PB2.Constraints(min=0.0, max=1.0),
                )
            )
            watch = stub.WatchVariables(PB2.WatchVariablesRequest(session_id="v", names=["t"]))
            seen = []

            async def collect():
                async for update in watch:
                    seen.append(from_proto(PB2, update.variable.value))
                    if len(seen) == 3:
                        return

            # The worker sends its headers once the watch is in place.
            await watch.initial_metadata()
            collector = asyncio.create_task(collect())
            for value in (0.1, 0.2, 0.3):
                await stub.SetVariable(
                    PB2.SetVariableRequest(session_id="v", name="t", value=to_proto(PB2, value))
                )
            bad = await stub.SetVariable(
                PB2.SetVariableRequest(session_id="v", name="t", value=to_proto(PB2, 2.0))
            )
            await asyncio.wait_for(collector, 5)
            return reg, bad, seen

    reg, bad, seen = run(scenario)
    assert reg.variable.version == 1
    assert bad.error.kind == PB2.ERROR_KIND_CONSTRAINT_VIOLATION
    assert seen == [0.1, 0.2, 0.3]


def test_exchange_tool_feeds_a_stream_into_a_tool_and_streams_its_answer():
    r = registry()

    async def upper(lines):
        async for line in lines:
            yield line.upper()

    r.register(upper)

    def messages(items, error=None):
        start = PB2.ToolInput(
            start=PB2.ToolExchangeStart(
                call=PB2.ExecuteToolRequest(tool_name="upper", arguments=args()),
                input_parameter="lines",
            )
        )
        yield start
        for item in items:
            yield PB2.ToolInput(item=to_proto(PB2, item))
        if error:
            yield PB2.ToolInput(error=PB2.ErrorInfo(kind=6, type="RustToolError", message=error))
        else:
            yield PB2.ToolInput(end=True)

    async def scenario(feed):
        async with running_server(r) as (stub, _):
            return [chunk async for chunk in stub.ExchangeTool(feed)]

    chunks = run(lambda: scenario(messages(["a", "b", "c"])))
    assert [from_proto(PB2, c.chunk) for c in chunks[:-1]] == ["A", "B", "C"]
    assert chunks[-1].WhichOneof("kind") == "done"
    failed = run(lambda: scenario(messages(["a"], error="the source broke")))
    assert [c.WhichOneof("kind") for c in failed] == ["chunk", "error"]
    assert "the source broke" in failed[-1].error.message
