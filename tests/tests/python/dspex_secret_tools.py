"""A tool that leaks an API key into an exception and a log line: the worker must redact both."""

import logging
import os

from snakepit_bridge.tools import tool

log = logging.getLogger("dspex_secret_tools")


@tool(name="leak_key")
async def leak_key() -> None:
    key = os.environ["OPENAI_API_KEY"]
    log.warning("about to fail with key %s", key)
    raise ValueError(f"the provider refused key {key}")


@tool(name="secret_digest")
async def secret_digest(name: str) -> str:
    """The SHA-256 of the environment variable ``name``: proves a worker got a secret without
    sending it back."""
    import hashlib

    return hashlib.sha256(os.environ.get(name, "").encode()).hexdigest()
