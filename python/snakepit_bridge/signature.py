"""Signatures from their wire definitions: a ``dspy.Signature`` with pydantic models, built once
per definition (see ``definitions.py``). The Rust side is ``bridge/src/api/dspy/signature.rs``."""

from __future__ import annotations

from typing import Any

from snakepit_bridge.dspy_loading import load_dspy
from snakepit_bridge.errors import InvalidArgument

def build_signature(pb2: Any, spec: Any) -> Any:
    """A ``dspy.Signature`` for a ``SignatureSpec`` (callers keep it: see ``definitions.py``)."""
    from snakepit_bridge.field_types import TypeBuilder

    dspy = load_dspy()
    if not spec.outputs:
        raise InvalidArgument(f"signature {spec.name!r} has no output field")
    types = TypeBuilder(spec.objects)
    fields: dict[str, Any] = {}
    for kind, specs in (("input", spec.inputs), ("output", spec.outputs)):
        for f in specs:
            annotation = types.annotation(f.type)
            extra: dict[str, Any] = {}
            if f.description:
                extra["desc"] = f.description
            if f.prefix:
                extra["prefix"] = f.prefix
            maker = dspy.InputField if kind == "input" else dspy.OutputField
            if f.name in fields:
                raise InvalidArgument(f"signature {spec.name!r} has two fields named {f.name!r}")
            fields[f.name] = (annotation, maker(**extra))
    signature = dspy.Signature(fields, spec.instructions or "")
    if spec.name:
        signature.__name__ = spec.name
    return signature
