"""Limits the worker shares with the Rust side, read once from the environment the bridge sets.

``SNAKEPIT_MAX_MESSAGE_BYTES``: the largest message (a request or a result) either side sends or
accepts on one call, on gRPC and on the fast path. The Rust side's default is the same (see
``bridge/src/fast.rs``, ``DEFAULT_MAX_FRAME``).
"""

from __future__ import annotations

import os

DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024


def max_message_bytes() -> int:
    """The largest message a call may carry, in bytes."""
    try:
        value = int(os.environ.get("SNAKEPIT_MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES))
    except ValueError:
        return DEFAULT_MAX_MESSAGE_BYTES
    return value if value > 0 else DEFAULT_MAX_MESSAGE_BYTES
