"""What both servicers share: the generated protobuf module, and failures as ``ErrorInfo``."""

from __future__ import annotations

import logging
from typing import Any

from snakepit_bridge.errors import BridgeError, error_info
from snakepit_bridge.proto import pb2 as load_pb2

log = logging.getLogger("snakepit_bridge")
pb2 = load_pb2()


def failure(exc: BaseException) -> Any:
    """The ``ErrorInfo`` for an exception raised while serving a request (DSPy's parse errors
    become ``ParseFailed`` with the field and the raw answer)."""
    if type(exc).__name__ == "AdapterParseError":
        from snakepit_bridge.prediction import parse_failure

        exc = parse_failure(exc)
    if not isinstance(exc, BridgeError):
        log.debug("python exception", exc_info=exc)
    return error_info(pb2, exc)
