"""Exceptions with a wire meaning, and their conversion to ``ErrorInfo``."""

from __future__ import annotations

import traceback
from typing import Any


class BridgeError(Exception):
    """An error the bridge reports with its own kind rather than as a Python exception."""

    kind_name = "ERROR_KIND_PYTHON_EXCEPTION"


class SessionNotFound(BridgeError):
    kind_name = "ERROR_KIND_SESSION_NOT_FOUND"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} does not exist on this worker")
        self.session_id = session_id


class NotFound(BridgeError):
    kind_name = "ERROR_KIND_NOT_FOUND"


class InvalidArgument(BridgeError):
    kind_name = "ERROR_KIND_INVALID_ARGUMENT"


class ConstraintViolation(BridgeError):
    kind_name = "ERROR_KIND_CONSTRAINT_VIOLATION"


class AlreadyExists(BridgeError):
    kind_name = "ERROR_KIND_ALREADY_EXISTS"


class CallbackFailed(BridgeError):
    kind_name = "ERROR_KIND_CALLBACK_FAILED"


class UnknownDefinition(BridgeError):
    """A request named a definition (by hash) this worker does not hold: the client sends it."""

    kind_name = "ERROR_KIND_UNKNOWN_DEFINITION"

    def __init__(self, kind: str, key: bytes) -> None:
        super().__init__(f"this worker holds no {kind} {key.hex()[:16]}…; send its definition")
        self.key = key


class ResultTooLarge(BridgeError):
    """A call's result does not fit in one message."""

    kind_name = "ERROR_KIND_RESULT_TOO_LARGE"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the result is {size} bytes, more than a message may carry ({limit} bytes)"
        )
        self.size = size
        self.limit = limit


def error_info(pb2: Any, exc: BaseException) -> Any:
    """The ``ErrorInfo`` message describing ``exc``."""
    kind_name = getattr(exc, "kind_name", "ERROR_KIND_PYTHON_EXCEPTION")
    is_bridge = isinstance(exc, BridgeError)
    return pb2.ErrorInfo(
        kind=pb2.ErrorKind.Value(kind_name),
        type=_text(type(exc).__name__),
        message=_text(str(exc)),
        traceback="" if is_bridge else _text("".join(traceback.format_exception(exc))),
        field=_text(getattr(exc, "field", "") or ""),
        raw_output=_text(getattr(exc, "raw_output", "") or ""),
    )


def _text(text: str) -> str:
    """``text`` fit to leave the worker: secrets (API keys) redacted, and valid UTF-8 (an error
    about undecodable text must still cross the wire, so lone surrogates are shown escaped, e.g.
    ``\\udcff``)."""
    from snakepit_bridge.security import scrub

    text = scrub(text)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
