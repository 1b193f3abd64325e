"""Streamed calls (``StreamModule``) over a real socket: field chunks as the LM writes them, the
whole result last, and a stream cancelled midway stops the LM."""

import asyncio
import sys
import time
from pathlib import Path

from conftest import PB2, run, running_server

from snakepit_bridge.values import from_proto, to_proto

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "dspex" / "examples" / "python"))

ANSWER = "The quick brown fox jumps over the lazy dog"


def request(question, events_file="", delay_ms=20.0, class_path="dspy.Predict", answer=ANSWER):
    fields = {"reasoning": "Because.", "answer": answer} if class_path.endswith("ChainOfThought") else {"answer": answer}
    kwargs = {"answers": {question: fields}, "delay_ms": delay_ms}
    if events_file:
        kwargs["events_file"] = events_file
    lm = PB2.LmConfig(
        custom=PB2.CustomLmConfig(class_path="dspex_stream_lm.StreamLM", kwargs=to_proto(PB2, kwargs).map)
    )
    spec = PB2.SignatureSpec(
        name="Streamed",
        inputs=[PB2.FieldSpec(name="question", type=PB2.TypeRef(scalar=0))],
        outputs=[PB2.FieldSpec(name="answer", type=PB2.TypeRef(scalar=0))],
    )
    return PB2.RunModuleRequest(
        class_path=class_path,
        signature=spec,
        inputs=to_proto(PB2, {"question": question}).map,
        options=PB2.CallOptions(lm=lm),
    )


def test_chunks_come_as_written_and_the_result_last():
    async def go():
        async with running_server() as (stub, _):
            # A first call imports DSPy and builds the module: the timed one only streams.
            [e async for e in stub.StreamModule(request("<warm>"))]
            events = []
            started = time.monotonic()
            async for event in stub.StreamModule(request("<s1>")):
                events.append((time.monotonic() - started, event))
            return events

    events = run(go)
    kinds = [e.WhichOneof("event") for _, e in events]
    assert kinds[-1] == "done" and kinds.count("done") == 1
    chunks = [e.chunk for _, e in events if e.WhichOneof("event") == "chunk"]
    assert len(chunks) > 5, "the answer came in pieces"
    assert "".join(c.text for c in chunks if c.field == "answer") == ANSWER
    done = events[-1][1].done
    assert from_proto(PB2, done.value)["answer"] == ANSWER
    first_chunk_at = next(t for t, e in events if e.WhichOneof("event") == "chunk")
    # 11 pieces 20 ms apart: the first one came well before the end.
    assert first_chunk_at < events[-1][0] - 0.1, (first_chunk_at, events[-1][0])


def test_chain_of_thought_streams_its_reasoning_too():
    async def go():
        async with running_server() as (stub, _):
            return [e async for e in stub.StreamModule(request("<s2>", class_path="dspy.ChainOfThought"))]

    events = run(go)
    fields = {e.chunk.field for e in events if e.WhichOneof("event") == "chunk"}
    assert fields == {"reasoning", "answer"}
    assert from_proto(PB2, events[-1].done.value)["reasoning"] == "Because."


def test_a_stream_cancelled_midway_stops_the_lm(tmp_path):
    events_file = tmp_path / "events"

    async def go():
        async with running_server() as (stub, _):
            call = stub.StreamModule(request("<s3>", str(events_file), delay_ms=50.0, answer="x" * 400))
            async for event in call:
                if event.WhichOneof("event") == "chunk":
                    break
            call.cancel()
            for _ in range(200):
                if "cancelled" in events_file.read_text():
                    break
                await asyncio.sleep(0.01)

    run(go)
    lines = events_file.read_text().split("\n")
    assert any(line.startswith("cancelled") for line in lines), lines
    produced = sum(1 for line in lines if line.startswith("chunk"))
    assert produced < 50, f"the LM stopped early: {produced} of 100+ pieces"


def test_a_bad_request_is_one_done_event_with_the_error():
    async def go():
        async with running_server() as (stub, _):
            bad = request("<s4>")
            bad.class_path = "dspy.NoSuchModule"
            return [e async for e in stub.StreamModule(bad)]

    (event,) = run(go)
    assert event.done.WhichOneof("result") == "error"
