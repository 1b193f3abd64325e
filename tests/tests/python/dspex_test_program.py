"""Python classes the dspex end-to-end tests wrap with defdspy!."""


class Counter:
    def __init__(self, start: int = 0, step: int = 1) -> None:
        self.value = start
        self.step = step

    def __call__(self, times: int = 1) -> int:
        self.value += self.step * times
        return self.value

    def read(self) -> int:
        return self.value

    def labels(self, prefix: str) -> list[str]:
        return [f"{prefix}{i}" for i in range(self.value)]

    def reset(self) -> None:
        self.value = 0
