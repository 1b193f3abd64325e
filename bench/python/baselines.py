"""In-process Python DSPy baselines for the dspex benchmark. Prints one JSON object.

    python baselines.py orchestration N T  dspy.Evaluate over N examples with T threads, 20 ms LM
    python baselines.py serve               one process for the whole overhead group, so Python and
                                            dspex can alternate in short blocks; reads commands on
                                            standard input, answers one JSON line each:
        sync N FIRST                        N sequential sync Predict calls, questions numbered from
                                            FIRST: {"times_us": [...], "cpu_us": per call}
        async N FIRST                       the same on DSPy's async path
    python baselines.py optimize N          dspy.BootstrapFewShot of a two-step program (Predict, then
                                            ChainOfThought) on N examples, 20 ms LM
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


def block(n, first, use_async=False):
    """``n`` sequential Predict calls; their wall times and the CPU time per call. DummyLM answers
    from a list: constant time per call, unlike its dict mode, which scans every key."""
    answers = [{"answer": f"a{i}", "confidence": "0.5"} for i in range(first, first + n)]
    lm = DummyLM(answers, adapter=ADAPTER)
    predict = dspy.Predict(SIGNATURE)
    times = []

    async def run_async():
        for i in range(first, first + n):
            started = time.perf_counter()
            out = await predict.acall(question=f"what is <q{i}>?", context="some context")
            times.append((time.perf_counter() - started) * 1e6)
            assert out.answer == f"a{i}", out

    cpu_started = time.process_time()
    with dspy.context(lm=lm, adapter=ADAPTER):
        if use_async:
            asyncio.run(run_async())
        else:
            for i in range(first, first + n):
                started = time.perf_counter()
                out = predict(question=f"what is <q{i}>?", context="some context")
                times.append((time.perf_counter() - started) * 1e6)
                assert out.answer == f"a{i}", out
    return {"times_us": times, "cpu_us": (time.process_time() - cpu_started) / n * 1e6}


def optimize(n):
    lm = SleepyLM({"query": "q", "reasoning": "r", "answer": "a"}, delay_ms=20, adapter=ADAPTER)

    class Rag(dspy.Module):
        def __init__(self):
            super().__init__()
            self.rewrite = dspy.Predict("question -> query")
            self.answer = dspy.ChainOfThought("question, query -> answer")

        def forward(self, question):
            query = self.rewrite(question=question).query
            return self.answer(question=question, query=query)

    trainset = [dspy.Example(question=f"q{i}", answer="a").with_inputs("question") for i in range(n)]
    optimizer = dspy.BootstrapFewShot(
        metric=lambda example, prediction, trace=None: example.answer == prediction.answer,
        max_bootstrapped_demos=n,
        max_labeled_demos=0,
    )
    with dspy.context(lm=lm, adapter=ADAPTER):
        started = time.perf_counter()
        compiled = optimizer.compile(Rag(), trainset=trainset)
        elapsed = time.perf_counter() - started
    assert len(compiled.rewrite.demos) == n
    return {"wall_ms": elapsed * 1e3}


def serve():
    for line in sys.stdin:
        kind, n, first = line.split()
        print(json.dumps(block(int(n), int(first), use_async=kind == "async")), flush=True)


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "serve":
        serve()
    elif kind == "optimize":
        print(json.dumps(optimize(int(sys.argv[2]))))
    elif kind == "orchestration":
        print(json.dumps(orchestration(int(sys.argv[2]), int(sys.argv[3]))))
    else:
        raise SystemExit(f"unknown baseline {kind}")
