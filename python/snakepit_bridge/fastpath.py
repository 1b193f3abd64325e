"""The fast path: DSPy calls as length-prefixed protobuf frames on a second Unix socket.

A unary gRPC call through grpc.aio costs about as much as a DSPy call itself (profiled: half of a
worker's CPU under sequential load went to grpc.aio's own machinery). The hot calls (RunModule,
CallInstance) therefore also travel on one long-lived, multiplexed connection per worker, in the
frames of ``framing.py``. Many requests may be in flight; responses come in completion order,
matched by id. Each call gets exactly one response frame, cancelled or not; a cancel for a call
that already answered is ignored.

A connection serves at most ``SNAKEPIT_FAST_MAX_TASKS`` calls at once (default 1024); more are
answered with ``STATUS_FAILED`` at once. A slow reader makes the connection stop reading requests
once ``SNAKEPIT_FAST_MAX_QUEUED_BYTES`` of replies wait for it (replies never pile up without
bound). A reply larger than a frame may be is replaced by a ``ResultTooLarge`` error response.

The socket lives in the owner's private (0700) directory; on top of that, a connection whose peer
is not the worker's own user (SO_PEERCRED) is closed unread.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import os
import socket
import ssl
import struct
from typing import Any

from snakepit_bridge.framing import (
    AUTHENTICATE,
    CALL_INSTANCE,
    CANCEL,
    HEADER,
    LENGTH_BYTES,
    LENGTH_OVERHEAD,
    RUN_MODULE,
    STATUS_CANCELLED,
    STATUS_FAILED,
    STATUS_OK,
    frame,
    max_message_bytes,
)

log = logging.getLogger("snakepit_bridge.fastpath")

# Before a TCP connection presented the token, no longer frame is buffered.
MAX_AUTH_FRAME = 1024

# The largest frame this worker reads or writes, counted as ``length`` counts it.
MAX_FRAME = max_message_bytes() + LENGTH_OVERHEAD


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


MAX_TASKS = _env_int("SNAKEPIT_FAST_MAX_TASKS", 1024)
# Reply bytes waiting for a slow reader before handlers wait too.
MAX_QUEUED_BYTES = _env_int("SNAKEPIT_FAST_MAX_QUEUED_BYTES", 8 * 1024 * 1024)

_PEERCRED = struct.Struct("3i")


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket."""
    _pid, uid, _gid = _PEERCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    )
    return uid


class FastConnection(asyncio.Protocol):
    """One fast-path connection: frames parsed as they arrive, each call answered once.

    A call that can run to its end at once (``servicer.RunModuleInline`` answers it: a DSPy module
    that only calls a CPU-only LM) runs right here, with no task, no queue and no extra trip
    through the event loop; every other call runs as a task, which a ``CANCEL`` frame cancels.
    Replies go straight to the transport; while it holds more than ``MAX_QUEUED_BYTES`` for a slow
    reader, the connection stops reading new requests and finished tasks wait to write."""

    def __init__(self, servicer: Any, pb2: Any, token: str | None = None) -> None:
        self._handlers = {
            RUN_MODULE: (
                pb2.RunModuleRequest,
                servicer.RunModule,
                getattr(servicer, "RunModuleInline", None),
            ),
            CALL_INSTANCE: (pb2.CallInstanceRequest, servicer.CallInstance, None),
        }
        self._pb2 = pb2
        self._buffer = bytearray()
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._transport: asyncio.Transport | None = None
        self._closed = False
        self._paused = False
        self._can_write = asyncio.Event()
        self._can_write.set()
        # On TCP, nothing is served before the first frame presented the run's token.
        self._expected_token = token.encode() if token is not None else None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        # On a Unix socket, only this user; on TCP, whoever presents the token first (_dispatch).
        if self._expected_token is None and (sock is None or peer_uid(sock) != os.getuid()):
            log.warning("refusing a fast-path connection from another user")
            self._closed = True
            transport.close()
            return
        transport.set_write_buffer_limits(high=MAX_QUEUED_BYTES)
        CONNECTIONS.add(self)

    def _refuse(self, why: str) -> None:
        log.warning("closing a fast-path connection: %s", why)
        self._closed = True
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._buffer += data
        self._process()

    def pause_writing(self) -> None:
        # The reader lags: take no new requests until it catches up.
        self._paused = True
        self._can_write.clear()
        if self._transport is not None and not self._closed:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        self._can_write.set()
        if self._transport is not None and not self._closed:
            self._transport.resume_reading()
            self._process()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._can_write.set()
        CONNECTIONS.discard(self)
        for task in list(self._tasks.values()):
            task.cancel()

    # -- frames -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Sends raw bytes on the connection (a frame, or anything for tests that break it)."""
        if not self._closed and self._transport is not None:
            self._transport.write(data)

    def queued_bytes(self) -> int:
        """Reply bytes waiting for the reader."""
        return self._transport.get_write_buffer_size() if self._transport is not None else 0

    def _process(self) -> None:
        buffer = self._buffer
        offset = 0
        try:
            while not self._closed and not self._paused and len(buffer) - offset >= HEADER.size:
                length, request_id, method = HEADER.unpack_from(buffer, offset)
                if self._expected_token is not None and length > MAX_AUTH_FRAME:
                    self._refuse("the first frame is too long to be the run's token")
                    return
                if length < LENGTH_OVERHEAD or length > MAX_FRAME:
                    log.warning("closing a fast-path connection: bad frame length %d", length)
                    self._closed = True
                    if self._transport is not None:
                        self._transport.close()
                    return
                end = offset + LENGTH_BYTES + length
                if end > len(buffer):
                    break
                payload = bytes(buffer[offset + HEADER.size : end])
                offset = end
                self._dispatch(request_id, method, payload)
        finally:
            del buffer[:offset]

    def _dispatch(self, request_id: int, method: int, payload: bytes) -> None:
        if self._expected_token is not None:
            if method != AUTHENTICATE or not hmac.compare_digest(payload, self._expected_token):
                self._refuse("the first frame did not present the run's token")
                return
            self._expected_token = None
            self.write(frame(request_id, STATUS_OK, b""))
            return
        if method == CANCEL:
            task = self._tasks.get(request_id)
            if task is not None:
                task.cancel()
            return
        if len(self._tasks) >= MAX_TASKS or request_id in self._tasks:
            reason = (
                f"the worker already serves {len(self._tasks)} calls on this connection"
                if request_id not in self._tasks
                else f"call id {request_id} is already in flight"
            )
            self.write(frame(request_id, STATUS_FAILED, reason.encode()))
            return
        handler = self._handlers.get(method)
        if handler is None:
            self.write(frame(request_id, STATUS_FAILED, f"unknown method {method}".encode()))
            return
        message_type, run, run_now = handler
        try:
            request = message_type.FromString(payload)
            response = run_now(request) if run_now is not None else None
        except Exception as exc:  # a malformed frame: say so, keep the connection
            self.write(frame(request_id, STATUS_FAILED, f"{type(exc).__name__}: {exc}".encode()))
            return
        if response is not None and not callable(response):
            self.write(frame(request_id, STATUS_OK, self._response_bytes(response)))
            return
        # It must wait: `run_now` may have handed back how to start it, else the handler does.
        start = response if response is not None else functools.partial(run, request, None)
        task = asyncio.get_running_loop().create_task(self._run(request_id, start))
        self._tasks[request_id] = task
        task.add_done_callback(lambda t, rid=request_id: self._finished(rid, t))

    async def _run(self, request_id: int, start: Any) -> None:
        try:
            try:
                data = frame(request_id, STATUS_OK, self._response_bytes(await start()))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                data = frame(request_id, STATUS_FAILED, f"{type(exc).__name__}: {exc}".encode())
            while self._paused and not self._closed:
                await self._can_write.wait()
            self.write(data)
        except asyncio.CancelledError:
            self.write(frame(request_id, STATUS_CANCELLED, b""))

    def _finished(self, request_id: int, task: asyncio.Task[None]) -> None:
        if self._tasks.get(request_id) is task:
            del self._tasks[request_id]
        if task.cancelled():
            # Cancelled before it ever ran: `_run` could not confirm it itself.
            self.write(frame(request_id, STATUS_CANCELLED, b""))

    def _response_bytes(self, response: Any) -> bytes:
        body = response.SerializeToString()
        if len(body) + LENGTH_OVERHEAD > MAX_FRAME:
            from snakepit_bridge.errors import ResultTooLarge, error_info

            too_large = ResultTooLarge(len(body), MAX_FRAME - LENGTH_OVERHEAD)
            log.warning("%s", too_large)
            body = self._pb2.CallResponse(error=error_info(self._pb2, too_large)).SerializeToString()
        return body


# Live connections, for tests that break one on purpose (see the Rust fault suite).
CONNECTIONS: set[FastConnection] = set()


def idle() -> bool:
    """Whether no fast-path call is in progress on any connection (calls answered at once
    never are)."""
    return not any(connection._tasks for connection in CONNECTIONS)


async def start(servicer: Any, pb2: Any, path: str) -> asyncio.AbstractServer:
    """Serves the fast path on the Unix socket ``path``."""
    loop = asyncio.get_running_loop()
    return await loop.create_unix_server(lambda: FastConnection(servicer, pb2), path=path)


async def start_tcp(
    servicer: Any, pb2: Any, host: str, token: str, tls: tuple[str, str] | None
) -> tuple[asyncio.AbstractServer, int]:
    """Serves the fast path on ``host`` (a free port), over TLS with ``tls`` (certificate and key
    files), each connection authenticated by ``token`` in its first frame. The server and its port."""
    context = None
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(*tls)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: FastConnection(servicer, pb2, token), host=host, port=0, ssl=context
    )
    # asyncio sets TCP_NODELAY on each accepted connection.
    return server, server.sockets[0].getsockname()[1]
