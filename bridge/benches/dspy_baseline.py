"""In-process DSPy baseline: the same signature and DummyLM as the Rust side, called sequentially.

Usage: python dspy_baseline.py N  -> prints {"p50_us": ..., "p99_us": ...} as JSON.
"""

import json
import sys
import time

import dspy
from dspy.utils import DummyLM

n = int(sys.argv[1])
warmup = 200
answers = {f"<q{i}>": {"answer": f"a{i}", "confidence": "0.5"} for i in range(n + warmup)}
lm = DummyLM(answers, adapter=dspy.ChatAdapter(use_json_adapter_fallback=False))
signature = dspy.Signature(
    {
        "question": (str, dspy.InputField()),
        "context": (str, dspy.InputField()),
        "answer": (str, dspy.OutputField()),
        "confidence": (float, dspy.OutputField()),
    },
    "Answer the question from the context.",
)
predict = dspy.Predict(signature)
times = []
with dspy.context(lm=lm, adapter=dspy.ChatAdapter(use_json_adapter_fallback=False)):
    for i in range(n + warmup):
        started = time.perf_counter()
        out = predict(question=f"what is <q{i}>?", context="some context")
        elapsed = time.perf_counter() - started
        assert out.answer == f"a{i}", out
        if i >= warmup:
            times.append(elapsed * 1e6)
times.sort()
print(json.dumps({"p50_us": times[len(times) // 2], "p99_us": times[int(len(times) * 0.99)]}))
