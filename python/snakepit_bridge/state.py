"""A module's tuned state in DSPy's own JSON format (``module.dump_state()``: predictor name →
demos, instructions, field prefixes and descriptions), applied to and read from modules. The Rust
side is ``dspex/src/state.rs`` (and ``ModuleState`` in ``bridge/src/api/dspy/state.rs``)."""

from __future__ import annotations

import json
from typing import Any

from snakepit_bridge.errors import InvalidArgument


def parse_state(text: str) -> dict[str, Any]:
    """The state a request carries, as JSON text."""
    try:
        state = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"a module state is not JSON: {exc}") from None
    if not isinstance(state, dict):
        raise InvalidArgument(f"a module state is a JSON object, not {type(state).__name__}")
    return state


def apply_state(module: Any, state: dict[str, Any]) -> None:
    """Loads ``state`` into the predictors of ``module`` (each by its DSPy name). Every predictor
    must have an entry, and every entry a predictor: a state made for another module is refused."""
    named = dict(module.named_parameters())
    missing = [name for name in named if name not in state]
    extra = [name for name in state if name not in named and name != "metadata"]
    if missing or extra:
        raise InvalidArgument(
            f"the state does not fit {type(module).__name__}: it has predictors "
            f"{sorted(k for k in state if k != 'metadata')}, the module {sorted(named)}"
        )
    for name, predictor in named.items():
        try:
            predictor.load_state(state[name])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"cannot load the state of predictor {name!r}: {exc!r}") from None


def dump_state(module: Any) -> dict[str, Any]:
    """The state of every predictor of ``module``, as DSPy saves it (JSON-ready)."""
    return {name: predictor.dump_state() for name, predictor in module.named_parameters()}
