"""A tool that makes its worker hold memory: the recycling tests grow a worker past its limit."""

from snakepit_bridge.tools import tool

_held: list[bytearray] = []


@tool(name="hold_memory")
async def hold_memory(mb: int) -> int:
    """Allocates and keeps ``mb`` MiB (touched, so it is resident); returns the MiB held."""
    block = bytearray(mb << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    _held.append(block)
    return sum(len(b) for b in _held) >> 20
