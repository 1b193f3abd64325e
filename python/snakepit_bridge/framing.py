"""The fast path's frames: their layout and limits. ``bridge/src/framing.rs`` is the same on the
Rust side; every constant here is defined there too, once, and a Rust test
(``framing::tests::both_sides_agree``) fails when the two differ.

    request:  u32 length | u64 id | u8 method | payload (a protobuf request)      little-endian
    response: u32 length | u64 id | u8 status | payload (a protobuf CallResponse)

``length`` counts everything after itself. Methods: ``RUN_MODULE``, ``CALL_INSTANCE``, ``CANCEL``
(empty payload; the id names the call to cancel), ``AUTHENTICATE`` (the run's token: the first
frame on a TCP connection, answered ``STATUS_OK``; any other first frame closes the connection). Statuses: ``STATUS_OK``, ``STATUS_FAILED`` (the
payload is a UTF-8 message), ``STATUS_CANCELLED`` (empty payload; nothing of the call runs any
more).

``SNAKEPIT_MAX_MESSAGE_BYTES`` (set by the bridge from ``BridgeBuilder::max_message_bytes``) is the
largest message, a request or a result, either side sends or accepts on one call, on gRPC and on
the fast path.
"""

from __future__ import annotations

import os
import struct

LENGTH_BYTES = 4
LENGTH_OVERHEAD = 9
HEADER = struct.Struct("<IQB")
HEADER_BYTES = LENGTH_BYTES + LENGTH_OVERHEAD
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024

RUN_MODULE = 1
CALL_INSTANCE = 2
CANCEL = 3
AUTHENTICATE = 4

STATUS_OK = 0
STATUS_FAILED = 1
STATUS_CANCELLED = 2


def max_message_bytes() -> int:
    """The largest message a call may carry, in bytes."""
    try:
        value = int(os.environ.get("SNAKEPIT_MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES))
    except ValueError:
        return DEFAULT_MAX_MESSAGE_BYTES
    return value if value > 0 else DEFAULT_MAX_MESSAGE_BYTES


def frame(request_id: int, code: int, payload: bytes) -> bytes:
    """One frame: ``code`` is a method (requests) or a status (responses)."""
    return HEADER.pack(len(payload) + LENGTH_OVERHEAD, request_id, code) + payload
