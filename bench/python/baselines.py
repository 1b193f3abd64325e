"""In-process Python DSPy baselines for the dspex benchmark. Prints one JSON object.

    python baselines.py overhead N [FIRST]  sequential Predict calls (sync path, and async path); the
                                            questions are numbered from FIRST, and DummyLM answers
                                            from a list (constant time per call, unlike its dict
                                            mode, which scans every key)
    python baselines.py orchestration N T  dspy.Evaluate over N examples with T threads, 20 ms LM
"""

import asyncio
import json
import sys
import time

import dspy
from dspy.utils import DummyLM

from dspex_bench_lm import SleepyLM

SIGNATURE = dspy.Signature(
    {
        "question": (str, dspy.InputField()),
        "context": (str, dspy.InputField()),
        "answer": (str, dspy.OutputField()),
        "confidence": (float, dspy.OutputField()),
    },
    "Answer the question from the context.",
)
ADAPTER = dspy.ChatAdapter(use_json_adapter_fallback=False)
WARMUP = 200


def percentiles(times):
    times = sorted(times)
    return times[len(times) // 2], times[int(len(times) * 0.99)]


def overhead(n, first=0):
    total = n + WARMUP
    answers = [{"answer": f"a{i}", "confidence": "0.5"} for i in range(first, first + 2 * total)]
    lm = DummyLM(answers, adapter=ADAPTER)
    predict = dspy.Predict(SIGNATURE)
    sync_times = []
    with dspy.context(lm=lm, adapter=ADAPTER):
        for i in range(first, first + total):
            started = time.perf_counter()
            out = predict(question=f"what is <q{i}>?", context="some context")
            elapsed = time.perf_counter() - started
            assert out.answer == f"a{i}", out
            if i >= first + WARMUP:
                sync_times.append(elapsed * 1e6)

    async def run_async():
        times = []
        with dspy.context(lm=lm, adapter=ADAPTER):
            for i in range(first + total, first + 2 * total):
                started = time.perf_counter()
                out = await predict.acall(question=f"what is <q{i}>?", context="some context")
                elapsed = time.perf_counter() - started
                assert out.answer == f"a{i}", out
                if i >= first + total + WARMUP:
                    times.append(elapsed * 1e6)
        return times

    async_times = asyncio.run(run_async())
    p50, p99 = percentiles(sync_times)
    ap50, ap99 = percentiles(async_times)
    return {"p50_us": p50, "p99_us": p99, "async_p50_us": ap50, "async_p99_us": ap99}


def orchestration(n, threads):
    lm = SleepyLM({"answer": "a", "confidence": "0.5"}, delay_ms=20, adapter=ADAPTER)
    devset = [
        dspy.Example(question=f"q{i}", context="c", answer="a").with_inputs("question", "context")
        for i in range(n)
    ]
    evaluate = dspy.Evaluate(
        devset=devset,
        metric=lambda example, prediction, trace=None: example.answer == prediction.answer,
        num_threads=threads,
        display_progress=False,
        display_table=False,
    )
    program = dspy.Predict(SIGNATURE)
    with dspy.context(lm=lm, adapter=ADAPTER):
        started = time.perf_counter()
        result = evaluate(program)
        elapsed = time.perf_counter() - started
    return {"wall_ms": elapsed * 1e3, "score": float(result.score)}


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "overhead":
        first = int(sys.argv[3]) if len(sys.argv) > 3 else 0
        print(json.dumps(overhead(int(sys.argv[2]), first)))
    elif kind == "orchestration":
        print(json.dumps(orchestration(int(sys.argv[2]), int(sys.argv[3]))))
    else:
        raise SystemExit(f"unknown baseline {kind}")
