"""The fast path: DSPy calls as length-prefixed protobuf frames on a second Unix socket.

A unary gRPC call through grpc.aio costs about as much as a DSPy call itself (profiled: half of a
worker's CPU under sequential load went to grpc.aio's own machinery). The hot calls (RunModule,
CallInstance) therefore also travel on one long-lived, multiplexed connection per worker, in the
frames of ``framing.py``. Many requests may be in flight; responses come in completion order,
matched by id. Each call gets exactly one response frame, cancelled or not; a cancel for a call
that already answered is ignored.

A connection serves at most ``SNAKEPIT_FAST_MAX_TASKS`` calls at once (default 1024); more are
answered with ``STATUS_FAILED`` at once. Replies leave through one writer that waits for the reader
(a slow reader holds replies here, up to a bound, rather than in an unbounded transport buffer). A
reply larger than a frame may be is replaced by a ``ResultTooLarge`` error response.

The socket lives in the owner's private (0700) directory; on top of that, a connection whose peer
is not the worker's own user (SO_PEERCRED) is closed unread.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import struct
from typing import Any

from snakepit_bridge.framing import (
    CALL_INSTANCE,
    CANCEL,
    HEADER,
    LENGTH_OVERHEAD,
    RUN_MODULE,
    STATUS_CANCELLED,
    STATUS_FAILED,
    STATUS_OK,
    frame,
    max_message_bytes,
)

log = logging.getLogger("snakepit_bridge.fastpath")

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


class FrameWriter:
    """The one writer of a connection: frames leave in order through one task that awaits
    ``drain()``. ``send`` waits while ``limit`` bytes wait for the reader; ``push`` never waits
    (for small control frames, which must not be held behind a full queue)."""

    def __init__(self, writer: asyncio.StreamWriter, limit: int = MAX_QUEUED_BYTES) -> None:
        self._writer = writer
        self._limit = limit
        self._frames: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False
        # The writer task is waiting for the transport to drain: frames must queue behind it.
        self._draining = False

    def push(self, data: bytes) -> None:
        if self._closed:
            return
        if not self._frames and not self._draining:
            # Nothing waits before it: straight to the transport, without a task switch. The
            # writer task takes over (and waits for the reader) once the transport holds more
            # than the bound.
            self._writer.write(data)
            if self._writer.transport.get_write_buffer_size() >= self._limit:
                self._draining = True
                self._ready.set()
            return
        self._frames.append(data)
        self._queued += len(data)
        if self._queued >= self._limit:
            self._room.clear()
        self._ready.set()

    async def send(self, data: bytes) -> None:
        while self._queued >= self._limit and not self._closed:
            await self._room.wait()
        self.push(data)

    def queued_bytes(self) -> int:
        return self._queued

    async def run(self) -> None:
        try:
            while True:
                await self._ready.wait()
                self._ready.clear()
                self._draining = True
                await self._writer.drain()
                while self._frames:
                    written = 0
                    while self._frames:
                        data = self._frames.popleft()
                        self._writer.write(data)
                        written += len(data)
                    await self._writer.drain()
                    self._queued -= written
                    if self._queued < self._limit:
                        self._room.set()
                self._draining = False
        except (ConnectionError, RuntimeError):
            pass
        finally:
            self._closed = True
            self._room.set()


# Live connections, for tests that break one on purpose (see the Rust fault suite).
CONNECTIONS: set[asyncio.StreamWriter] = set()


async def _serve_connection(servicer: Any, pb2: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is None or peer_uid(sock) != os.getuid():
        log.warning("refusing a fast-path connection from another user")
        writer.close()
        return
    handlers = {
        RUN_MODULE: (pb2.RunModuleRequest, servicer.RunModule),
        CALL_INSTANCE: (pb2.CallInstanceRequest, servicer.CallInstance),
    }
    tasks: dict[int, asyncio.Task[None]] = {}
    out = FrameWriter(writer)
    writing = asyncio.ensure_future(out.run())
    CONNECTIONS.add(writer)

    def response_bytes(response: Any) -> bytes:
        body = response.SerializeToString()
        if len(body) + LENGTH_OVERHEAD > MAX_FRAME:
            from snakepit_bridge.errors import ResultTooLarge, error_info

            too_large = ResultTooLarge(len(body), MAX_FRAME - LENGTH_OVERHEAD)
            log.warning("%s", too_large)
            body = pb2.CallResponse(error=error_info(pb2, too_large)).SerializeToString()
        return body

    async def handle(request_id: int, method: int, payload: bytes) -> None:
        try:
            try:
                message_type, handler = handlers[method]
                request = message_type.FromString(payload)
                response = await handler(request, None)
                data = frame(request_id, STATUS_OK, response_bytes(response))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a malformed frame: say so, keep the connection
                data = frame(request_id, STATUS_FAILED, f"{type(exc).__name__}: {exc}".encode())
            await out.send(data)
        except asyncio.CancelledError:
            out.push(frame(request_id, STATUS_CANCELLED, b""))

    def finished(request_id: int, task: asyncio.Task[None]) -> None:
        if tasks.get(request_id) is task:
            del tasks[request_id]
        if task.cancelled():
            # Cancelled before it ever ran: `handle` could not confirm it itself.
            out.push(frame(request_id, STATUS_CANCELLED, b""))

    try:
        while True:
            header = await reader.readexactly(HEADER.size)
            length, request_id, method = HEADER.unpack(header)
            if length < LENGTH_OVERHEAD or length > MAX_FRAME:
                log.warning("closing a fast-path connection: bad frame length %d", length)
                return
            payload = await reader.readexactly(length - LENGTH_OVERHEAD)
            if method == CANCEL:
                task = tasks.get(request_id)
                if task is not None:
                    task.cancel()
                continue
            if len(tasks) >= MAX_TASKS or request_id in tasks:
                reason = (
                    f"the worker already serves {len(tasks)} calls on this connection"
                    if request_id not in tasks
                    else f"call id {request_id} is already in flight"
                )
                out.push(frame(request_id, STATUS_FAILED, reason.encode()))
                continue
            task = asyncio.ensure_future(handle(request_id, method, payload))
            tasks[request_id] = task
            task.add_done_callback(lambda t, rid=request_id: finished(rid, t))
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        CONNECTIONS.discard(writer)
        for task in list(tasks.values()):
            task.cancel()
        if tasks:
            await asyncio.wait(list(tasks.values()), timeout=5.0)
        writing.cancel()
        writer.close()


async def start(servicer: Any, pb2: Any, path: str) -> asyncio.AbstractServer:
    """Serves the fast path on the Unix socket ``path``."""
    return await asyncio.start_unix_server(
        lambda r, w: _serve_connection(servicer, pb2, r, w), path=path, limit=MAX_FRAME
    )
