"""Spans and trace context of calls in the worker: the caller's trace id reaches the log lines,
and asked-for spans come back parented as DSPy ran them (module, adapter, LM) with token counts
and log records as events."""

import logging

from conftest import PB2, run

from snakepit_bridge.tracing import TraceContextFilter, parse_traceparent
from snakepit_bridge.values import from_proto, to_proto

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def request(options, name="Traced", question="q", class_path="dspy.Predict", answer_type=0):
    spec = PB2.SignatureSpec(
        name=name,
        inputs=[PB2.FieldSpec(name="question", type=PB2.TypeRef(scalar=0))],
        outputs=[PB2.FieldSpec(name="answer", type=PB2.TypeRef(scalar=answer_type))],
    )
    lm = PB2.LmConfig(dummy=PB2.DummyLmConfig(answers=to_proto(PB2, {"q": {"answer": "a"}})))
    options.lm.CopyFrom(lm)
    return PB2.RunModuleRequest(
        class_path=class_path,
        signature=spec,
        inputs=to_proto(PB2, {"question": question}).map,
        options=options,
    )


def servicer():
    from snakepit_bridge.server import BridgeServicer

    return BridgeServicer("t.0", "r")


def attributes(span):
    return {e.key: from_proto(PB2, e.value) for e in span.attributes.entries}


def test_traceparent_parsing_accepts_only_w3c_version_00():
    assert parse_traceparent(TRACEPARENT) == TRACE_ID
    for bad in ["", "garbage", f"01-{TRACE_ID}-00f067aa0ba902b7-01", f"00-{TRACE_ID}-short-01"]:
        assert parse_traceparent(bad) == ""


def test_asked_for_spans_come_back_as_a_tree_with_tokens():
    options = PB2.CallOptions(traceparent=TRACEPARENT, record_spans=True)
    response = run(lambda: servicer().RunModule(request(options), None))
    assert response.WhichOneof("result") == "value", response
    spans = {span.name: span for span in response.spans}
    root = spans["dspy.worker"]
    assert root.parent_id == b"", "the worker's root is the caller's child"
    assert attributes(root)["dspy.module"] == "dspy.predict.predict.Predict"
    assert attributes(root)["dspy.signature"] == "Traced"
    module = spans["dspy.module Predict"]
    assert module.parent_id == root.id
    lm = spans["dspy.lm"]
    assert lm.parent_id in {s.id for s in response.spans if s.name.startswith("dspy.")}
    # Parents come before their children, and every span ended within its parent.
    seen = set()
    by_id = {s.id: s for s in response.spans}
    for span in response.spans:
        assert span.parent_id == b"" or span.parent_id in seen, span.name
        seen.add(span.id)
        assert span.start_unix_nanos <= span.end_unix_nanos
        if span.parent_id:
            parent = by_id[span.parent_id]
            assert parent.start_unix_nanos <= span.start_unix_nanos <= span.end_unix_nanos <= parent.end_unix_nanos
    assert {s.name for s in response.spans} >= {
        "dspy.worker",
        "dspy.module Predict",
        "dspy.adapter.format ChatAdapter",
        "dspy.lm",
        "dspy.adapter.parse ChatAdapter",
    }
    assert attributes(root)["gen_ai.usage.input_tokens"] == response.usage.prompt_tokens


def test_no_trace_context_no_spans_and_no_callbacks():
    for options in [PB2.CallOptions(), PB2.CallOptions(traceparent="bad", record_spans=True),
                    PB2.CallOptions(traceparent=TRACEPARENT)]:
        response = run(lambda: servicer().RunModule(request(options), None))
        assert response.WhichOneof("result") == "value", response
        assert len(response.spans) == 0


def test_a_failed_call_has_its_error_on_the_root_span():
    options = PB2.CallOptions(traceparent=TRACEPARENT, record_spans=True)
    # The answer "a" is no int: the adapter's parse fails.
    response = run(lambda: servicer().RunModule(request(options, name="Int", answer_type=1), None))
    assert response.WhichOneof("result") == "error", response
    root = next(s for s in response.spans if s.name == "dspy.worker")
    assert root.error, "the root span says why"
    parse = next(s for s in response.spans if s.name.startswith("dspy.adapter.parse"))
    assert parse.error, "and so does the step that failed"


def test_log_records_carry_the_trace_id_and_become_span_events():
    from snakepit_bridge import tracing

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep()
    handler.addFilter(TraceContextFilter())
    logger = logging.getLogger("snakepit_test_tracing")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        options = PB2.CallOptions(traceparent=TRACEPARENT, record_spans=True)
        with tracing.Traced(options, "dspy.worker") as traced:
            logger.warning("inside the call")
        logger.warning("outside any call")
    finally:
        logger.removeHandler(handler)
    assert [r.trace_id for r in records] == [TRACE_ID, ""]
    (event,) = traced.root.events
    assert event[0] == "log" and event[2]["message"] == "inside the call"
    assert event[2]["level"] == "WARNING"
