"""The worker's asyncio gRPC server: the generic half of ``BridgeService`` (health, sessions,
tools, callbacks, variables), the DSPy half from ``dspy_service.py``, and the command line.

Run as ``python -m snakepit_bridge.server --socket PATH --run-id ID [--worker-id ID] [--import MODULE]``
(or ``--port 0`` for TCP on 127.0.0.1). It prints ``SNAKEPIT_READY <address>`` on standard output
once it can serve, stops gracefully on SIGTERM, and exits by itself when its parent process is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc

import snakepit_bridge
from snakepit_bridge import builtin_tools  # noqa: F401  (registers the built-in tools)
from snakepit_bridge import framing, security
from snakepit_bridge.callbacks import CallbackChannel, RemoteToolError
from snakepit_bridge.dspy_service import DspyService
from snakepit_bridge.errors import CallbackFailed, InvalidArgument
from snakepit_bridge.messages import failure as _failure
from snakepit_bridge.messages import pb2
from snakepit_bridge.proto import pb2_grpc as load_pb2_grpc
from snakepit_bridge.sessions import Session, SessionStore
from snakepit_bridge.tools import REGISTRY, ToolContext, ToolRegistry, tool_spec
from snakepit_bridge.values import from_proto, map_from_proto, to_proto
from snakepit_bridge.variables import Constraints, Variable

log = logging.getLogger("snakepit_bridge")


def _remote_error(err: Any) -> Exception:
    """The exception Python code sees for an error Rust sent: the kind decides the class (a Rust
    tool's refused arguments are an ``InvalidArgument``, anything else a ``RemoteToolError``)."""
    message = f"{err.type}: {err.message}".strip(": ")
    if err.kind == pb2.ErrorKind.Value("ERROR_KIND_INVALID_ARGUMENT"):
        return InvalidArgument(message)
    return RemoteToolError(message)
pb2_grpc = load_pb2_grpc()

PRUNE_INTERVAL_SECONDS = 30.0
MAX_MESSAGE_BYTES = framing.max_message_bytes()


def _variable_type_name(enum_value: int) -> str:
    return pb2.VariableType.Name(enum_value).removeprefix("VARIABLE_TYPE_").lower()


def _constraints_from_proto(c: Any) -> Constraints:
    return Constraints(
        min=c.min if c.HasField("min") else None,
        max=c.max if c.HasField("max") else None,
        choices=list(c.choices),
        min_length=c.min_length if c.HasField("min_length") else None,
        max_length=c.max_length if c.HasField("max_length") else None,
        dimensions=c.dimensions if c.HasField("dimensions") else None,
        shape=tuple(c.shape),
    )


def _constraints_to_proto(c: Constraints) -> Any:
    msg = pb2.Constraints(choices=c.choices, shape=list(c.shape))
    for name in ("min", "max", "min_length", "max_length", "dimensions"):
        value = getattr(c, name)
        if value is not None:
            setattr(msg, name, value)
    return msg


def _variable_to_proto(v: Variable) -> Any:
    return pb2.Variable(
        name=v.name,
        type=pb2.VariableType.Value("VARIABLE_TYPE_" + v.type.upper()),
        value=to_proto(pb2, v.value),
        constraints=_constraints_to_proto(v.constraints),
        version=v.version,
        description=v.description,
    )


def _session_to_proto(s: Session) -> Any:
    return pb2.SessionInfo(
        session_id=s.session_id,
        ttl_seconds=s.ttl_seconds,
        metadata=s.metadata,
        created_at=s.created_at,
        last_used_at=s.last_used_at,
        variables=[v.name for v in s.variables.all()],
        rust_tools=sorted(s.callbacks.tools) if s.callbacks else [],
    )


class BridgeServicer(DspyService, pb2_grpc.BridgeServiceServicer):
    """Implements ``snakepit.bridge.v1.BridgeService``."""

    def __init__(self, worker_id: str, run_id: str, registry: ToolRegistry = REGISTRY) -> None:
        from snakepit_bridge.instance import DspyRuntime

        self.worker_id = worker_id
        self.run_id = run_id
        self.sessions = SessionStore()
        self.tools = registry
        self.dspy = DspyRuntime(pb2)

    # -- health ------------------------------------------------------------------------------

    async def Ping(self, request: Any, context: Any) -> Any:
        return pb2.PingResponse(
            worker_id=self.worker_id,
            run_id=self.run_id,
            pid=os.getpid(),
            python_version=sys.version.split()[0],
            package_version=snakepit_bridge.__version__,
            protocol=snakepit_bridge.PROTOCOL,
            sessions=len(self.sessions),
            definitions=len(self.dspy.definitions),
            resident_bytes=_resident_bytes(),
        )

    # -- sessions ----------------------------------------------------------------------------

    async def InitializeSession(self, request: Any, context: Any) -> Any:
        try:
            session = self.sessions.create(
                request.session_id, request.ttl_seconds, dict(request.metadata)
            )
            return pb2.SessionResponse(session=_session_to_proto(session))
        except Exception as exc:
            return pb2.SessionResponse(error=_failure(exc))

    async def GetSession(self, request: Any, context: Any) -> Any:
        try:
            return pb2.SessionResponse(
                session=_session_to_proto(self.sessions.get(request.session_id))
            )
        except Exception as exc:
            return pb2.SessionResponse(error=_failure(exc))

    async def CleanupSession(self, request: Any, context: Any) -> Any:
        session = self.sessions.cleanup(request.session_id)
        if session is None:
            return pb2.SessionResponse(session=pb2.SessionInfo(session_id=request.session_id))
        return pb2.SessionResponse(session=_session_to_proto(session))

    # -- tools -------------------------------------------------------------------------------

    async def ListTools(self, request: Any, context: Any) -> Any:
        return pb2.ListToolsResponse(tools=[tool_spec(pb2, t) for t in self.tools.all()])

    def _tool_call(self, request: Any) -> tuple[Any, ToolContext, dict[str, Any]]:
        callbacks = None
        if request.session_id:
            callbacks = self.sessions.get(request.session_id).callbacks
        entry = self.tools.get(request.tool_name)
        arguments = map_from_proto(pb2, request.arguments)
        return entry, ToolContext(request.session_id, callbacks), arguments

    async def ExecuteTool(self, request: Any, context: Any) -> Any:
        try:
            entry, ctx, arguments = self._tool_call(request)
            if entry.streaming:
                raise InvalidArgument(
                    f"tool {entry.name!r} streams its results; call it as a streaming tool"
                )
            result = await entry.call(ctx, arguments)
            return pb2.ExecuteToolResponse(value=to_proto(pb2, result))
        except Exception as exc:
            return pb2.ExecuteToolResponse(error=_failure(exc))

    async def ExecuteStreamingTool(self, request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            entry, ctx, arguments = self._tool_call(request)
            if not entry.streaming:
                result = await entry.call(ctx, arguments)
                yield pb2.ToolChunk(done=to_proto(pb2, result))
                return
            async for chunk in entry.stream(ctx, arguments):
                yield pb2.ToolChunk(chunk=to_proto(pb2, chunk))
            yield pb2.ToolChunk(done=to_proto(pb2, None))
        except Exception as exc:
            yield pb2.ToolChunk(error=_failure(exc))

    async def ExchangeTool(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        """A tool called with one argument fed as a stream from the caller (see the proto)."""
        await context.send_initial_metadata(())
        try:
            first = await request_iterator.__anext__()
            if first.WhichOneof("kind") != "start":
                raise InvalidArgument("the first message of ExchangeTool must be `start`")
            entry, ctx, arguments = self._tool_call(first.start.call)
            parameter = first.start.input_parameter
            if parameter in arguments:
                raise InvalidArgument(f"argument {parameter!r} is the stream; do not pass it too")
        except StopAsyncIteration:
            return
        except Exception as exc:
            yield pb2.ToolChunk(error=_failure(exc))
            return

        async def items() -> AsyncIterator[Any]:
            async for message in request_iterator:
                kind = message.WhichOneof("kind")
                if kind == "item":
                    yield from_proto(pb2, message.item)
                elif kind == "end":
                    return
                elif kind == "error":
                    raise _remote_error(message.error)
            raise CallbackFailed("the caller closed the stream without ending it")

        arguments[parameter] = items()
        try:
            if entry.streaming:
                async for chunk in entry.stream(ctx, arguments):
                    yield pb2.ToolChunk(chunk=to_proto(pb2, chunk))
                yield pb2.ToolChunk(done=to_proto(pb2, None))
            else:
                yield pb2.ToolChunk(done=to_proto(pb2, await entry.call(ctx, arguments)))
        except Exception as exc:
            yield pb2.ToolChunk(error=_failure(exc))

    # -- callbacks (Python -> Rust) ----------------------------------------------------------

    async def ToolCallbacks(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        await context.send_initial_metadata(())
        try:
            first = await request_iterator.__anext__()
        except StopAsyncIteration:
            return
        if first.WhichOneof("kind") != "open":
            yield pb2.CallbackServerMessage(
                error=_failure(InvalidArgument("the first callback message must be `open`"))
            )
            return
        try:
            session = self.sessions.get(first.open.session_id)
        except Exception as exc:
            yield pb2.CallbackServerMessage(error=_failure(exc))
            return
        if session.callbacks is not None and not session.callbacks.closed:
            session.callbacks.close()
        channel = CallbackChannel(session.session_id)
        session.callbacks = channel

        async def read_client() -> None:
            try:
                async for message in request_iterator:
                    kind = message.WhichOneof("kind")
                    if kind == "register":
                        channel.tools[message.register.tool.name] = message.register.tool
                        await channel.outgoing.put(("registered", message.register.tool.name))
                    elif kind == "chunk":
                        channel.push(message.chunk.call_id, from_proto(pb2, message.chunk.value))
                    elif kind == "result":
                        result = message.result
                        if result.WhichOneof("result") == "error":
                            channel.resolve(result.call_id, error=_remote_error(result.error))
                        else:
                            channel.resolve(result.call_id, from_proto(pb2, result.value))
            finally:
                channel.close()

        reader = asyncio.create_task(read_client())
        try:
            while True:
                item = await channel.outgoing.get()
                if item is None:
                    return
                if item[0] == "registered":
                    yield pb2.CallbackServerMessage(
                        registered=pb2.CallbackRegistered(tool_name=item[1])
                    )
                    continue
                if item[0] == "cancel":
                    yield pb2.CallbackServerMessage(cancel=pb2.CallbackCancel(call_id=item[1]))
                    continue
                _, call_id, tool_name, arguments = item
                try:
                    args = to_proto(pb2, arguments).map
                except Exception as exc:
                    channel.resolve(call_id, error=exc)
                    continue
                yield pb2.CallbackServerMessage(
                    request=pb2.CallbackRequest(call_id=call_id, tool_name=tool_name, arguments=args)
                )
        finally:
            reader.cancel()
            channel.close()
            if session.callbacks is channel:
                session.callbacks = None

    # -- variables ---------------------------------------------------------------------------

    async def RegisterVariable(self, request: Any, context: Any) -> Any:
        try:
            session = self.sessions.get(request.session_id)
            variable = session.variables.register(
                request.name,
                _variable_type_name(request.type),
                from_proto(pb2, request.initial_value),
                _constraints_from_proto(request.constraints),
                request.description,
            )
            return pb2.VariableResponse(variable=_variable_to_proto(variable))
        except Exception as exc:
            return pb2.VariableResponse(error=_failure(exc))

    async def GetVariable(self, request: Any, context: Any) -> Any:
        try:
            variable = self.sessions.get(request.session_id).variables.get(request.name)
            return pb2.VariableResponse(variable=_variable_to_proto(variable))
        except Exception as exc:
            return pb2.VariableResponse(error=_failure(exc))

    async def SetVariable(self, request: Any, context: Any) -> Any:
        try:
            variables = self.sessions.get(request.session_id).variables
            variable = variables.set(request.name, from_proto(pb2, request.value))
            return pb2.VariableResponse(variable=_variable_to_proto(variable))
        except Exception as exc:
            return pb2.VariableResponse(error=_failure(exc))

    async def ListVariables(self, request: Any, context: Any) -> Any:
        try:
            variables = self.sessions.get(request.session_id).variables.all()
            return pb2.ListVariablesResponse(variables=[_variable_to_proto(v) for v in variables])
        except Exception as exc:
            return pb2.ListVariablesResponse(error=_failure(exc))

    async def WatchVariables(self, request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            store = self.sessions.get(request.session_id).variables
            queue = store.watch(list(request.names))
        except Exception as exc:
            yield pb2.VariableUpdate(error=_failure(exc))
            return
        # Headers now, so the client knows the watch is in place before the first change.
        await context.send_initial_metadata(())
        try:
            if request.include_initial:
                for variable in store.all():
                    if not request.names or variable.name in request.names:
                        yield pb2.VariableUpdate(variable=_variable_to_proto(variable))
            while True:
                variable = await queue.get()
                if variable is None:
                    return
                yield pb2.VariableUpdate(variable=_variable_to_proto(variable))
        finally:
            store.unwatch(queue)


async def _prune_sessions(servicer: BridgeServicer) -> None:
    while True:
        await asyncio.sleep(PRUNE_INTERVAL_SECONDS)
        expired = servicer.sessions.prune()
        if expired:
            log.info("expired %d idle session(s)", len(expired))


def _resident_bytes() -> int:
    """This process's resident memory in bytes (``/proc``; 0 where there is none)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("parent process %d is gone; stopping", parent)
            stop.set()
            return
        await asyncio.sleep(1.0)


def create_server(servicer: BridgeServicer, token: str | None = None) -> grpc.aio.Server:
    """The gRPC server; with ``token``, every call must present it (see ``security``)."""
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.so_reuseport", 0),
    ]
    interceptors = [security.TokenInterceptor(token)] if token else []
    server = grpc.aio.server(options=options, interceptors=interceptors)
    pb2_grpc.add_BridgeServiceServicer_to_server(servicer, server)
    return server


async def serve(args: argparse.Namespace) -> None:
    for module in args.imports:
        importlib.import_module(module)
    # gRPC's completion-queue thread needs the GIL to deliver each reply; with Python's default
    # 5 ms switch interval a CPU-bound call on the event loop can keep it waiting that long.
    sys.setswitchinterval(float(os.environ.get("SNAKEPIT_SWITCH_INTERVAL", "0.0005")))
    servicer = BridgeServicer(args.worker_id, args.run_id)
    if servicer.dspy.has_default_lm():
        # A pool with an LM will run DSPy: import it (about 0.6 s) before saying ready, so the
        # first call does not pay for it.
        servicer.dspy.default_lm()
    token = security.auth_token()
    server = create_server(servicer, token)
    if args.socket:
        os.umask(0o077)
        address = f"unix:{args.socket}"
        server.add_insecure_port(address)
    else:
        if not token:
            raise SystemExit("a TCP worker needs a run token (SNAKEPIT_AUTH_TOKEN_FILE)")
        identity = security.tls_identity()
        if identity:
            credentials = grpc.ssl_server_credentials([identity])
            port = server.add_secure_port(f"{args.host}:{args.port}", credentials)
        else:
            port = server.add_insecure_port(f"{args.host}:{args.port}")
        address = f"tcp:{args.host}:{port}"
    await server.start()
    fast = None
    if args.fast_socket:
        from snakepit_bridge import fastpath

        fast = await fastpath.start(servicer, pb2, args.fast_socket)
    elif args.fast_tcp and token:
        from snakepit_bridge import fastpath

        files = security.tls_files()
        fast, fast_port = await fastpath.start_tcp(servicer, pb2, args.host, token, files)
        address += f" fast=tcp:{args.host}:{fast_port}"

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    background = [
        asyncio.create_task(_prune_sessions(servicer)),
        asyncio.create_task(_watch_parent(os.getppid(), stop)),
    ]
    print(f"SNAKEPIT_READY {address}", flush=True)
    log.info("worker %s serving on %s", args.worker_id, address)
    await stop.wait()
    log.info("worker %s stopping", args.worker_id)
    for task in background:
        task.cancel()
    if fast is not None:
        fast.close()
    await server.stop(grace=2.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m snakepit_bridge.server")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--socket", help="serve on this Unix domain socket path")
    where.add_argument("--port", type=int, help="serve on HOST:PORT (0 picks a free port)")
    parser.add_argument(
        "--fast-tcp", action="store_true",
        help="with --port: also serve DSPy calls as frames on another port of HOST (TLS when the "
        "gRPC port has it, the run token first)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="the address a TCP worker binds (a Ray node's own address; default 127.0.0.1)",
    )
    parser.add_argument(
        "--fast-socket", help="also serve DSPy calls as protobuf frames on this Unix socket"
    )
    parser.add_argument("--run-id", default="", help="the pool run this worker belongs to")
    parser.add_argument("--worker-id", default="0", help="this worker's id within the run")
    parser.add_argument(
        "--import", dest="imports", action="append", default=[],
        help="a module to import at start (registers its @tool functions); repeatable",
    )
    parser.add_argument("--log-level", default=os.environ.get("SNAKEPIT_LOG_LEVEL", "WARNING"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    security.install_log_scrubbing()
    from snakepit_bridge.tracing import install_log_context

    install_log_context()
    from snakepit_bridge.event_loop import new_event_loop

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve(args))


if __name__ == "__main__":
    main()
