"""The fast path: DSPy calls as length-prefixed protobuf frames on a second Unix socket.

A unary gRPC call through grpc.aio costs about as much as a DSPy call itself (profiled: half of a
worker's CPU under sequential load went to grpc.aio's own machinery). The hot calls (RunModule,
CallInstance) therefore also travel on one long-lived, multiplexed connection per worker:

    request:  u32 length | u64 id | u8 method | protobuf request      (little-endian)
    response: u32 length | u64 id | u8 status | protobuf CallResponse

``length`` counts everything after itself. Methods: 1 = RunModule, 2 = CallInstance. Status 0 is
a response; 1 means the frame could not be served (the payload is a UTF-8 message). Many requests
may be in flight; responses come in completion order, matched by id.

The socket lives in the owner's private (0700) directory; on top of that, a connection whose peer
is not the worker's own user (SO_PEERCRED) is closed unread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from typing import Any

log = logging.getLogger("snakepit_bridge.fastpath")

HEADER = struct.Struct("<IQB")
MAX_FRAME = 256 * 1024 * 1024
RUN_MODULE = 1
CALL_INSTANCE = 2


_PEERCRED = struct.Struct("3i")


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket."""
    _pid, uid, _gid = _PEERCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    )
    return uid


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
    tasks: set[asyncio.Task[None]] = set()

    def reply(request_id: int, status: int, payload: bytes) -> None:
        writer.write(HEADER.pack(len(payload) + 9, request_id, status) + payload)

    async def handle(request_id: int, method: int, payload: bytes) -> None:
        try:
            message_type, handler = handlers[method]
            request = message_type.FromString(payload)
            response = await handler(request, None)
            reply(request_id, 0, response.SerializeToString())
        except Exception as exc:  # a malformed frame: say so, keep the connection
            reply(request_id, 1, f"{type(exc).__name__}: {exc}".encode())

    try:
        while True:
            header = await reader.readexactly(HEADER.size)
            length, request_id, method = HEADER.unpack(header)
            if length < 9 or length > MAX_FRAME:
                log.warning("closing a fast-path connection: bad frame length %d", length)
                return
            payload = await reader.readexactly(length - 9)
            task = asyncio.ensure_future(handle(request_id, method, payload))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        for task in tasks:
            task.cancel()
        writer.close()


async def start(servicer: Any, pb2: Any, path: str) -> asyncio.AbstractServer:
    """Serves the fast path on the Unix socket ``path``."""
    return await asyncio.start_unix_server(
        lambda r, w: _serve_connection(servicer, pb2, r, w), path=path, limit=MAX_FRAME
    )
