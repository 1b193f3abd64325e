"""What keeps a worker private: the per-run token a TCP worker demands, its TLS identity, and the
scrubbing of secrets (API keys) from everything the worker sends or logs.

All of it comes from files in the owner's private (0700) directory, named by environment
variables, so no secret is ever in a process's arguments:

- ``SNAKEPIT_AUTH_TOKEN_FILE``: the run's token; every gRPC call must carry the metadata
  ``authorization: Bearer <token>`` (compared in constant time), else it fails UNAUTHENTICATED.
- ``SNAKEPIT_TLS_CERT_FILE`` / ``SNAKEPIT_TLS_KEY_FILE``: the worker serves TLS with this identity.
- ``SNAKEPIT_SECRET_NAMES``: comma-separated names of environment variables holding secrets; their
  values are replaced by ``[REDACTED]`` in error messages, tracebacks and log records.
"""

from __future__ import annotations

import hmac
import logging
import os
from typing import Any

import grpc

REDACTED = "[REDACTED]"
_secret_names: set[str] = set()


def _read(variable: str) -> bytes | None:
    path = os.environ.get(variable)
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def auth_token() -> str | None:
    """The run's token, if this worker must demand one."""
    token = _read("SNAKEPIT_AUTH_TOKEN_FILE")
    return token.decode().strip() if token else None


def tls_identity() -> tuple[bytes, bytes] | None:
    """``(private key, certificate chain)`` in PEM, if this worker serves TLS."""
    cert = _read("SNAKEPIT_TLS_CERT_FILE")
    key = _read("SNAKEPIT_TLS_KEY_FILE")
    return (key, cert) if cert and key else None


def tls_files() -> tuple[str, str] | None:
    """The paths of the certificate chain and key in PEM, if this worker serves TLS."""
    cert = os.environ.get("SNAKEPIT_TLS_CERT_FILE")
    key = os.environ.get("SNAKEPIT_TLS_KEY_FILE")
    return (cert, key) if cert and key else None


def _deny(handler: Any) -> Any:
    """A handler of the same shape as ``handler`` that fails every call UNAUTHENTICATED."""

    async def abort(_request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong run token")

    async def abort_stream(_request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong run token")
        yield  # pragma: no cover - abort raises

    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(abort)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(abort_stream)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(abort)
    return grpc.stream_stream_rpc_method_handler(abort_stream)


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Lets a call through only with ``authorization: Bearer <token>``."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        presented = b""
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                presented = value.encode() if isinstance(value, str) else bytes(value)
        handler = await continuation(details)
        if handler is None:
            return None
        # compare_digest takes the same time wherever the first difference is.
        if hmac.compare_digest(presented, self._expected):
            return handler
        return _deny(handler)


def add_secret_names(*names: str) -> None:
    """Treats the values of these environment variables as secrets from now on."""
    _secret_names.update(n for n in names if n)


def _secret_values() -> list[str]:
    names = set(_secret_names)
    names.update(n.strip() for n in os.environ.get("SNAKEPIT_SECRET_NAMES", "").split(","))
    values = [os.environ.get(n, "") for n in names if n]
    # Longest first, so a secret that contains another is replaced whole.
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def scrub(text: str) -> str:
    """``text`` with every secret value replaced by ``[REDACTED]``."""
    for value in _secret_values():
        if value in text:
            text = text.replace(value, REDACTED)
    return text


class ScrubbingFilter(logging.Filter):
    """Scrubs secrets from log records before any handler formats them."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        if record.exc_info and record.exc_info[1] is not None:
            import traceback

            message += "\n" + "".join(traceback.format_exception(*record.exc_info))
            record.exc_info = None
            record.exc_text = None
        record.msg = scrub(message)
        record.args = ()
        return True


def install_log_scrubbing() -> None:
    """Adds the scrubbing filter to every handler of the root logger."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(ScrubbingFilter())
