"""What one DSPy call gives back: inputs checked before the prompt, outputs checked after the
parse, parse failures with the field and the raw answer, and the call's own history and usage.
The Rust side is ``bridge/src/api/dspy/prediction.rs``."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from snakepit_bridge.errors import BridgeError, InvalidArgument

_SECTION = re.compile(r"\[\[ ## (\w+) ## \]\]")


class ParseFailed(BridgeError):
    """The LM answered something that does not fit the signature."""

    kind_name = "ERROR_KIND_PARSE_FAILED"

    def __init__(self, message: str, field: str, raw_output: str) -> None:
        super().__init__(message)
        self.field = field
        self.raw_output = raw_output


def _optional(annotation: Any) -> bool:
    import typing

    return type(None) in typing.get_args(annotation)


class HistoryCollector:
    """Collects the history entry of every LM request made during one call, including those of LM
    copies that modules make themselves (BestOfN, Refine, ...): DSPy appends each entry to the
    ``history`` of every object in ``settings.caller_modules``. (A DSPy callback would see them
    too, but switches on DSPy's callback machinery for every module call, which costs ~0.3 ms.)"""

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []


def check_outputs(signature: Any, prediction: Any, entries: list[dict[str, Any]]) -> None:
    """What DSPy lets through but a typed bridge may not, as parse errors naming the field:
    None (or 'None') for a required str field, text that is not UTF-8, and NaN or infinity
    anywhere in a field (JSON has no such numbers, and no Rust caller expects them)."""
    if signature is None:
        return
    fields = signature.__dict__.get("_snakepit_output_checks")
    if fields is None:
        # (name, whether it is a required str), worked out once per signature
        fields = [
            (name, info.annotation is str and not _optional(info.annotation))
            for name, info in signature.output_fields.items()
        ]
        try:
            signature._snakepit_output_checks = fields
        except (AttributeError, TypeError):
            pass
    get = prediction.get if hasattr(prediction, "get") else (lambda _name: None)
    for name, required_str in fields:
        value = get(name)
        if required_str:
            if value is None or value == "None":
                raise ParseFailed(
                    f"the LM gave no value for output field {name!r}", name, last_output(entries)
                )
        problem = _unfit_value(value)
        if problem:
            raise ParseFailed(
                f"the LM's answer for output field {name!r} {problem}", name, last_output(entries)
            )


def check_inputs(signature: Any, inputs: dict[str, Any]) -> None:
    """Refuses an input whose value does not fit its field's declared type, before DSPy renders it
    into a prompt (DSPy would otherwise fail deep inside its formatter, or send nonsense to the LM).
    Values are only checked, never converted; undeclared names are DSPy's business (``config``...)."""
    if signature is None or not hasattr(signature, "input_fields"):
        return
    adapters = signature.__dict__.get("_snakepit_input_adapters")
    if adapters is None:
        from pydantic import TypeAdapter

        adapters = {}
        for name, info in signature.input_fields.items():
            try:
                adapters[name] = TypeAdapter(info.annotation)
            except Exception:  # an annotation pydantic cannot check: leave it to DSPy
                pass
        try:
            signature._snakepit_input_adapters = adapters
        except (AttributeError, TypeError):
            pass
    for name, value in inputs.items():
        adapter = adapters.get(name)
        if adapter is None:
            continue
        try:
            adapter.validate_python(value)
        except Exception as exc:
            first = str(exc).splitlines()
            detail = first[2].strip() if len(first) > 2 else str(exc)
            raise InvalidArgument(
                f"input field {name!r} does not fit its declared type: {detail}"
            ) from None


def _unfit_value(value: Any) -> str:
    """Why a parsed output value cannot be a typed answer, or ''."""
    todo = [value]
    seen = 0
    while todo and seen < 1_000_000:
        item = todo.pop()
        seen += 1
        if isinstance(item, float) and not math.isfinite(item):
            return f"is not a finite number ({item})"
        if isinstance(item, str):
            if item.isascii():
                continue
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "is not valid UTF-8 text"
        elif isinstance(item, dict):
            todo.extend(item.values())
            todo.extend(item.keys())
        elif isinstance(item, (list, tuple)):
            todo.extend(item)
        elif hasattr(item, "model_dump") and not isinstance(item, type):
            todo.append(item.model_dump())
    return ""


def last_output(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return ""
    outputs = entries[-1].get("outputs") or []
    first = outputs[0] if outputs else ""
    if isinstance(first, dict):
        return str(first.get("text", first))
    return str(first)


def failing_field(signature: Any, raw: str) -> str:
    """The first output field that is missing from or does not parse in a raw completion."""
    from dspy.adapters.utils import parse_value

    sections: dict[str, str] = {}
    try:
        parsed = json.loads(raw)
        if isinstance(parsed, dict):
            sections = {k: v for k, v in parsed.items()}
    except (ValueError, TypeError):
        parts = _SECTION.split(raw)
        for i in range(1, len(parts) - 1, 2):
            sections[parts[i]] = parts[i + 1].strip()
    for name, info in signature.output_fields.items():
        if name not in sections:
            return name
        try:
            parse_value(sections[name], info.annotation)
        except Exception:
            return name
    return ""


def parse_failure(exc: Any) -> ParseFailed:
    raw = str(getattr(exc, "lm_response", "") or "")
    signature = getattr(exc, "signature", None)
    field_name = failing_field(signature, raw) if signature is not None else ""
    where = f" in field {field_name!r}" if field_name else ""
    return ParseFailed(f"the LM's answer does not fit the signature{where}", field_name, raw)


@dataclass
class CallRecord:
    usage: dict[str, int] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def record_of(entries: list[dict[str, Any]], with_history: bool = True) -> CallRecord:
    """The token usage of a call's LM requests and, when asked, their history."""
    record = CallRecord(usage={"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
    cost = 0.0
    for entry in entries:
        usage = entry.get("usage") or {}
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            value = usage.get(key) or 0
            record.usage[key] += int(value) if isinstance(value, (int, float)) else 0
        # LiteLLM's price of the request, when it knows the model's (DSPy keeps it as `cost`).
        price = entry.get("cost")
        if isinstance(price, (int, float)) and price == price and price >= 0:
            cost += float(price)
        if not with_history:
            continue
        outputs = []
        for o in entry.get("outputs") or []:
            outputs.append(str(o.get("text", o)) if isinstance(o, dict) else str(o))
        record.history.append(
            {
                "messages": entry.get("messages") or [],
                "outputs": outputs,
                "model": str(entry.get("model") or ""),
            }
        )
    record.usage["lm_calls"] = len(entries)
    record.usage["cost"] = cost
    return record
