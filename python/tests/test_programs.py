"""Programs whose forward is Rust, tuned by DSPy's optimisers: the host's side of the protocol
(``programs.py``) and module states (``state.py``), with a fake Rust side playing the forward and
the metric over a real callback channel, and real DSPy with DummyLM."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from conftest import PB2, run

from snakepit_bridge.callbacks import CallbackChannel
from snakepit_bridge.errors import InvalidArgument
from snakepit_bridge.instance import DspyRuntime
from snakepit_bridge.programs import ProgramHost
from snakepit_bridge.state import apply_state, dump_state


def spec(name: str, inputs: list[str], outputs: list[str]) -> Any:
    field = lambda n: PB2.FieldSpec(name=n, type=PB2.TypeRef(scalar=0))  # noqa: E731
    return PB2.SignatureSpec(
        name=name, inputs=[field(n) for n in inputs], outputs=[field(n) for n in outputs]
    )


def entry(path: str, cls: str, signature: Any) -> dict[str, Any]:
    encoded = signature.SerializeToString(deterministic=True)
    return {"path": path, "class": cls, "signature": encoded, "signature_hash": encoded, "state": ""}


class Session:
    def __init__(self) -> None:
        self.session_id = "s"
        self.callbacks = CallbackChannel("s")
        self.callbacks.tools = {"dspex.forward": None, "dspex.metric": None}


def lm_config(answers: dict[str, dict[str, str]]) -> bytes:
    from snakepit_bridge.values import to_proto

    return PB2.LmConfig(dummy=PB2.DummyLmConfig(answers=to_proto(PB2, answers))).SerializeToString()


async def play_rust(host: ProgramHost, session: Session, metric: Any, calls: list[str]) -> None:
    """The Rust side: a forward calls `rewrite`, then `answer` with its query; the metric."""
    while True:
        item = await session.callbacks.outgoing.get()
        if item is None:
            return
        _, call_id, tool, arguments = item
        calls.append(tool)

        async def answer(call_id: int = call_id, tool: str = tool, arguments: Any = arguments) -> None:
            try:
                if tool == "dspex.forward":
                    token, inputs = arguments["token"], arguments["inputs"]
                    rewrite = await host.call_traced(token, "rewrite", **inputs)
                    out = await host.call_traced(
                        token, "answer", question=inputs["question"], query=rewrite.query
                    )
                    session.callbacks.resolve(call_id, {"answer": out.answer})
                else:
                    session.callbacks.resolve(call_id, metric(arguments))
            except Exception as exc:  # noqa: BLE001 - handed to the waiting thread
                session.callbacks.resolve(call_id, error=exc)

        asyncio.get_running_loop().create_task(answer())


def rag_host() -> tuple[ProgramHost, Session]:
    runtime = DspyRuntime(PB2)
    session = Session()
    host = ProgramHost(
        [
            entry("rewrite", "dspy.Predict", spec("Rewrite", ["question"], ["query"])),
            entry("answer", "dspy.ChainOfThought", spec("Answer", ["question", "query"], ["answer"])),
        ],
        session=session,
        runtime=runtime,
    )
    return host, session


ANSWERS = {}
for i in range(6):
    ANSWERS[f"find-{i}\n"] = {"reasoning": "r", "answer": f"a{i}"}
for i in range(6):
    ANSWERS[f"<q{i}>"] = {"query": f"find-{i}"}


def test_bootstrap_sees_the_rust_forward_s_predictor_calls_in_its_trace() -> None:
    async def scenario() -> None:
        host, session = rag_host()
        calls: list[str] = []
        scores = lambda a: {"score": float(a["example"]["answer"] == a["prediction"]["answer"])}  # noqa: E731
        rust = asyncio.get_running_loop().create_task(play_rust(host, session, scores, calls))
        trainset = [{"question": f"<q{i}>", "answer": f"a{i}"} for i in range(1, 4)]
        trainset[0]["answer"] = "wrong"
        result = await host.compile(
            "BootstrapFewShot",
            {"$metric": True, "max_bootstrapped_demos": 2, "max_labeled_demos": 0,
             "teacher_settings": {"lm": {"$lm": lm_config(ANSWERS)}}},
            {},
            trainset,
            None,
            ["question"],
        )
        session.callbacks.close()
        await rust
        state = json.loads(result["state"])
        assert [d["question"] for d in state["rewrite"]["demos"]] == ["<q2>", "<q3>"]
        assert [d["answer"] for d in state["answer.predict"]["demos"]] == ["a2", "a3"]
        assert calls.count("dspex.metric") == 3
        assert calls.count("dspex.forward") == 3

    run(scenario)


def test_a_failing_metric_ends_the_compilation_with_its_message() -> None:
    async def scenario() -> None:
        host, session = rag_host()
        failing = lambda a: {"metric_error": "the metric failed on trainset example #0: boom"}  # noqa: E731
        rust = asyncio.get_running_loop().create_task(play_rust(host, session, failing, []))
        with pytest.raises(Exception, match="boom"):
            await host.compile(
                "BootstrapFewShot",
                {"$metric": True, "teacher_settings": {"lm": {"$lm": lm_config(ANSWERS)}}},
                {},
                [{"question": "<q1>", "answer": "a1"}],
                None,
                ["question"],
            )
        session.callbacks.close()
        await rust

    run(scenario)


def test_cancelling_the_compilation_stops_the_optimiser_threads() -> None:
    async def scenario() -> None:
        host, session = rag_host()
        forwards = 0

        async def slow_rust() -> None:
            nonlocal forwards
            while (item := await session.callbacks.outgoing.get()) is not None:
                forwards += 1  # never answered: the optimiser thread waits on Rust

        rust = asyncio.get_running_loop().create_task(slow_rust())
        task = asyncio.get_running_loop().create_task(
            host.compile(
                "BootstrapFewShot",
                {"$metric": True, "teacher_settings": {"lm": {"$lm": lm_config(ANSWERS)}}},
                {},
                [{"question": f"<q{i}>", "answer": f"a{i}"} for i in range(5)],
                None,
                ["question"],
            )
        )
        while forwards == 0:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        assert host.cancelled
        assert forwards == 1, "no forward after the cancel"
        session.callbacks.close()
        await rust

    run(scenario)


def test_a_trace_token_of_a_finished_forward_is_refused() -> None:
    async def scenario() -> None:
        host, _ = rag_host()
        from snakepit_bridge.errors import NotFound

        with pytest.raises(NotFound, match="no forward"):
            await host.call_traced("nope", "rewrite", question="q")

    run(scenario)


def test_a_state_for_another_module_is_refused_and_a_fitting_one_applied() -> None:
    import dspy

    module = dspy.ChainOfThought("question -> answer")
    state = dump_state(module)
    assert list(state) == ["predict"]
    state["predict"]["demos"] = [{"question": "q", "answer": "a", "reasoning": "r"}]
    state["predict"]["signature"]["instructions"] = "Be brief."
    apply_state(module, state)
    assert module.predict.demos[0]["answer"] == "a"
    assert module.predict.signature.instructions == "Be brief."
    with pytest.raises(InvalidArgument, match="does not fit"):
        apply_state(dspy.Predict("question -> answer"), state)
    with pytest.raises(InvalidArgument, match="does not fit"):
        apply_state(module, {**state, "extra": state["predict"]})


def test_a_module_state_travels_by_hash_and_the_module_is_built_once() -> None:
    from snakepit_bridge.errors import UnknownDefinition

    runtime = DspyRuntime(PB2)
    signature = spec("QA", ["question"], ["answer"])
    key = signature.SerializeToString(deterministic=True)
    state = {"self": {"demos": [{"question": "q", "answer": "a"}], "traces": [], "train": [],
                      "signature": {"instructions": "Tuned.", "fields": [
                          {"prefix": "Question:", "description": "${question}"},
                          {"prefix": "Answer:", "description": "${answer}"}]}, "lm": None}}
    with pytest.raises(UnknownDefinition):
        runtime.module_for("dspy.Predict", key, signature, {}, b"h1", "")
    module = runtime.module_for("dspy.Predict", key, signature, {}, b"h1", json.dumps(state))
    assert module.signature.instructions == "Tuned."
    assert module.demos[0]["answer"] == "a"
    # Named by hash from now on, and the same module.
    assert runtime.module_for("dspy.Predict", key, None, {}, b"h1", "") is module
    plain = runtime.module_for("dspy.Predict", key, None, {}, b"", "")
    assert plain is not module and plain.demos == []
