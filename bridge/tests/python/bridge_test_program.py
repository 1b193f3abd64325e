"""A small user class for the generic-object tests."""

import asyncio


class Snapshot:
    def __init__(self, value: int) -> None:
        self.value = value

    def read(self) -> int:
        return self.value


class Counter:
    def __init__(self, start: int = 0, step: int = 1) -> None:
        self.value = start
        self.step = step

    def increment(self, times: int = 1) -> int:
        self.value += self.step * times
        return self.value

    async def doubled(self) -> int:
        await asyncio.sleep(0)
        return self.value * 2

    def snapshot(self) -> Snapshot:
        return Snapshot(self.value)


from snakepit_bridge import tool  # noqa: E402


@tool
def longest_answer(args, pred) -> float:
    """A reward for BestOfN: longer answers are better, 3+ characters is enough."""
    return min(len(pred.answer) / 3.0, 1.0)
