"""The Python worker of dspex.

Each worker process runs :mod:`snakepit_bridge.server`: an asyncio gRPC server that keeps sessions,
runs tools registered with :func:`tool`, holds typed variables, and calls back into Rust tools.
"""

from snakepit_bridge.errors import (
    AlreadyExists,
    BridgeError,
    CallbackFailed,
    ConstraintViolation,
    InvalidArgument,
    NotFound,
    SessionNotFound,
)
from snakepit_bridge.tools import ToolContext, tool
from snakepit_bridge.values import Tensor

__version__ = "0.1.0"
PROTOCOL = "snakepit.bridge.v1"

__all__ = [
    "AlreadyExists",
    "BridgeError",
    "CallbackFailed",
    "ConstraintViolation",
    "InvalidArgument",
    "NotFound",
    "PROTOCOL",
    "SessionNotFound",
    "Tensor",
    "ToolContext",
    "__version__",
    "tool",
]
