"""Typed session variables with constraints, checked on every set, and watchers of their changes."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any

from snakepit_bridge.errors import AlreadyExists, ConstraintViolation, InvalidArgument, NotFound
from snakepit_bridge.values import Tensor

TYPES = ("float", "integer", "string", "boolean", "choice", "embedding", "tensor")


@dataclass
class Constraints:
    min: float | None = None
    max: float | None = None
    choices: list[str] = field(default_factory=list)
    min_length: int | None = None
    max_length: int | None = None
    dimensions: int | None = None
    shape: tuple[int, ...] = ()


@dataclass
class Variable:
    name: str
    type: str
    value: Any
    constraints: Constraints
    description: str = ""
    version: int = 1


def _bounds(name: str, value: float, c: Constraints) -> None:
    if c.min is not None and value < c.min:
        raise ConstraintViolation(f"variable {name!r}: {value} is below the minimum {c.min}")
    if c.max is not None and value > c.max:
        raise ConstraintViolation(f"variable {name!r}: {value} is above the maximum {c.max}")


def validate(name: str, type_: str, value: Any, c: Constraints) -> Any:
    """Returns ``value`` normalised to ``type_``, or raises ConstraintViolation."""

    def wrong(expected: str) -> ConstraintViolation:
        return ConstraintViolation(
            f"variable {name!r} is {type_}: expected {expected}, got {type(value).__name__}"
        )

    if type_ == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong("a number")
        value = float(value)
        if math.isnan(value):
            raise ConstraintViolation(f"variable {name!r}: NaN is not allowed")
        _bounds(name, value, c)
    elif type_ == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
        _bounds(name, value, c)
    elif type_ == "string":
        if not isinstance(value, str):
            raise wrong("a string")
        if c.min_length is not None and len(value) < c.min_length:
            raise ConstraintViolation(
                f"variable {name!r}: length {len(value)} is below the minimum {c.min_length}"
            )
        if c.max_length is not None and len(value) > c.max_length:
            raise ConstraintViolation(
                f"variable {name!r}: length {len(value)} is above the maximum {c.max_length}"
            )
    elif type_ == "boolean":
        if not isinstance(value, bool):
            raise wrong("a boolean")
    elif type_ == "choice":
        if not isinstance(value, str):
            raise wrong("a string")
        if value not in c.choices:
            raise ConstraintViolation(
                f"variable {name!r}: {value!r} is not one of {', '.join(map(repr, c.choices))}"
            )
    elif type_ == "embedding":
        if not isinstance(value, list) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in value
        ):
            raise wrong("a list of numbers")
        value = [float(x) for x in value]
        if c.dimensions is not None and len(value) != c.dimensions:
            raise ConstraintViolation(
                f"variable {name!r}: expected {c.dimensions} dimensions, got {len(value)}"
            )
    elif type_ == "tensor":
        if not isinstance(value, Tensor):
            raise wrong("a tensor")
        if c.shape and tuple(value.shape) != tuple(c.shape):
            raise ConstraintViolation(
                f"variable {name!r}: expected shape {tuple(c.shape)}, got {value.shape}"
            )
    else:
        raise InvalidArgument(f"unknown variable type {type_!r}; known: {', '.join(TYPES)}")
    return value


class VariableStore:
    """The variables of one session."""

    def __init__(self) -> None:
        self._variables: dict[str, Variable] = {}
        self._watchers: list[tuple[frozenset[str], asyncio.Queue[Variable | None]]] = []

    def register(
        self, name: str, type_: str, value: Any, constraints: Constraints, description: str = ""
    ) -> Variable:
        if not name:
            raise InvalidArgument("a variable needs a name")
        if name in self._variables:
            raise AlreadyExists(f"variable {name!r} is already registered")
        if type_ == "choice" and not constraints.choices:
            raise InvalidArgument(f"choice variable {name!r} needs at least one choice")
        if constraints.min is not None and constraints.max is not None:
            if constraints.min > constraints.max:
                raise InvalidArgument(f"variable {name!r}: min {constraints.min} > max {constraints.max}")
        value = validate(name, type_, value, constraints)
        variable = Variable(name, type_, value, constraints, description)
        self._variables[name] = variable
        self._notify(variable)
        return variable

    def get(self, name: str) -> Variable:
        try:
            return self._variables[name]
        except KeyError:
            raise NotFound(f"no variable named {name!r}") from None

    def set(self, name: str, value: Any) -> Variable:
        variable = self.get(name)
        variable.value = validate(name, variable.type, value, variable.constraints)
        variable.version += 1
        self._notify(variable)
        return variable

    def all(self) -> list[Variable]:
        return [self._variables[n] for n in sorted(self._variables)]

    def watch(self, names: list[str]) -> asyncio.Queue[Variable | None]:
        """A queue that receives a snapshot of each watched variable after each change, and
        ``None`` when the session ends."""
        for name in names:
            self.get(name)
        queue: asyncio.Queue[Variable | None] = asyncio.Queue()
        self._watchers.append((frozenset(names), queue))
        return queue

    def unwatch(self, queue: asyncio.Queue[Variable | None]) -> None:
        self._watchers = [(n, q) for n, q in self._watchers if q is not queue]

    def close(self) -> None:
        for _, queue in self._watchers:
            queue.put_nowait(None)
        self._watchers.clear()

    def _notify(self, variable: Variable) -> None:
        snapshot = Variable(
            variable.name,
            variable.type,
            variable.value,
            variable.constraints,
            variable.description,
            variable.version,
        )
        for names, queue in self._watchers:
            if not names or variable.name in names:
                queue.put_nowait(snapshot)
