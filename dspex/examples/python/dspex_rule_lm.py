"""A deterministic LM for the optimize example and the optimiser tests: it reads the output
fields the prompt asks for (ChatAdapter's "Your output fields are:" list) and answers each by
rule, so any signature gets an answer that parses, including the ones optimisers use to propose
instructions (COPRO, MIPROv2, GEPA, SIMBA).

Rules, from the last message: a `query` for a question `<tagN>` is `find-tagN`; an `answer` for a
query `find-tagN` (or a question `<tagN>`) is `aN`; `reasoning` is `because`. Any other text field
is a proposal, numbered so that proposals differ (`Answer precisely, variant 3.`). Answers are
in the chat adapter's format, or one JSON object when the prompt asks for one (JSON adapter). Booleans are
true, integers 1, floats 0.5, lists and maps empty. `delay_ms` sleeps before each answer, like a
provider that takes that long.

With `untuned_answers="wrong"`, an `answer` is right only when the prompt has been tuned: it shows
a demo (an earlier assistant message), or its instructions ask to answer "precisely" (as this
LM's own proposals do), or the question says it is easy; otherwise it is `unsure`. An optimiser
then has something to improve.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from typing import Any

from dspy.clients.engines.dummy_engine import AsyncDummyEngine, DummyEngine
from dspy.lm15 import Message, Response, TextPart, Usage
from dspy.utils import DummyLM

_OUTPUT_FIELDS = re.compile(r"^\d+\. `(\w+)` \(([^)]*)\)", re.MULTILINE)
_QUESTION = re.compile(r"<([a-z]+)(\d+)>")
_QUERY = re.compile(r"find-([a-z]+)(\d+)")


class _RuleEngine(DummyEngine):
    _proposals = itertools.count(1)
    _lock = threading.Lock()

    def _complete_messages(self, messages: list[dict[str, Any]]) -> Any:
        owner = self.owner
        if owner.delay_ms:
            time.sleep(owner.delay_ms / 1000)
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
        outputs_part = system.split("Your output fields are:", 1)[-1].split("All interactions", 1)[0]
        fields = _OUTPUT_FIELDS.findall(outputs_part) or [("answer", "str")]
        last = messages[-1]["content"]
        answer = {name: self._value(name, kind, last) for name, kind in fields}
        tuned = "precisely" in system or any(m["role"] == "assistant" for m in messages[:-1])
        easy = "easy" in last
        if owner.untuned_answers == "wrong" and "answer" in answer and not tuned and not easy:
            answer["answer"] = "unsure"
        if "JSON object" in system + last:
            # The JSON adapter (GEPA's reflection uses it): the fields as one JSON object.
            output = json.dumps(answer)
        else:
            output = owner._format_answer_fields(answer)
        return Response(id=None, model="rule", message=Message.assistant([TextPart(output)]),
                        finish_reason="stop", usage=Usage(input_tokens=10, output_tokens=5,
                                                          total_tokens=15))

    def _value(self, name: str, kind: str, last: str) -> Any:
        questions = _QUESTION.findall(last)
        queries = _QUERY.findall(last)
        if name == "query" and questions:
            tag, n = questions[-1]
            return f"find-{tag}{n}"
        if name == "answer" and (queries or questions):
            _, n = (queries or questions)[-1]
            return f"a{n}"
        if name == "reasoning":
            return "because"
        kind = kind.lower()
        if kind.startswith("bool"):
            return True
        if kind.startswith("int"):
            return 1
        if kind.startswith("float"):
            return 0.5
        if kind.startswith(("list", "tuple")):
            return []
        if kind.startswith("dict"):
            return {}
        with self._lock:
            n = next(self._proposals)
        return f"Answer precisely, variant {n}."


class RuleLM(DummyLM):
    """See the module's documentation."""

    def __init__(self, delay_ms: int = 0, untuned_answers: str = "right", **kwargs: Any) -> None:
        super().__init__([], **kwargs)
        self.delay_ms = delay_ms
        self.untuned_answers = untuned_answers
        self.model = "rule"
        self._engines()

    def _engines(self) -> None:
        self._engine_spec = _RuleEngine(self)
        self._async_engine_spec = AsyncDummyEngine(self._engine_spec)

    def copy(self, **kwargs: Any) -> RuleLM:
        copied = super().copy(**kwargs)
        copied._engines()
        return copied
