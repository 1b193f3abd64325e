"""A tool that breaks the worker's fast-path connections the way a protocol bug would: it writes a
frame header whose length is impossible, which the Rust reader cannot get past."""

import struct

from snakepit_bridge import fastpath
from snakepit_bridge.tools import tool


@tool(name="break_fast_path")
async def break_fast_path() -> int:
    broken = 0
    for connection in list(fastpath.CONNECTIONS):
        connection.write(struct.pack("<IQB", 3, 0, 0))
        broken += 1
    return broken
