"""DSPy through the service: real dspy with DummyLM, over a real socket."""

from conftest import PB2, run, running_server

from snakepit_bridge.prediction import failing_field
from snakepit_bridge.field_types import TypeBuilder
from snakepit_bridge.values import from_proto, to_proto

SCALARS = {"str": 0, "int": 1, "float": 2, "bool": 3}


def t(shape):
    """A ``TypeRef`` from a short form: "str", "int", "float", "bool", ("list", T), ("map", T),
    ("optional", T), ("literal", [values]), ("object", name)."""
    if isinstance(shape, str):
        return PB2.TypeRef(scalar=SCALARS[shape])
    kind, inner = shape
    if kind == "literal":
        return PB2.TypeRef(literal=PB2.LiteralType(values=inner))
    if kind == "object":
        return PB2.TypeRef(object=inner)
    return PB2.TypeRef(**{kind: t(inner)})


ENTITY = PB2.ObjectDef(
    name="Entity",
    fields=[
        PB2.ObjectFieldDef(name="name", type=t("str"), description="Its name."),
        PB2.ObjectFieldDef(name="aliases", type=t(("list", "str"))),
    ],
)


def field(name, shape, desc=""):
    return PB2.FieldSpec(name=name, description=desc, type=t(shape))


def qa_spec():
    return PB2.SignatureSpec(
        name="QA",
        instructions="Answer questions.",
        inputs=[field("question", "str", "The question.")],
        outputs=[
            field("answer", "str"),
            field("confidence", "float"),
            field("n", "int"),
            field("tags", ("list", "str")),
            field("label", ("literal", ["pos", "neg"])),
            field("maybe", ("optional", "int")),
            field("scores", ("map", "float")),
            field("entities", ("list", ("object", "Entity"))),
        ],
        objects=[ENTITY],
    )


GOOD = {
    "answer": "Paris",
    "confidence": "0.9",
    "n": "3",
    "tags": '["a", "b"]',
    "label": "pos",
    "maybe": "None",
    "scores": '{"x": 1.5}',
    "entities": [{"name": "France", "aliases": ["FR"]}],
}


def dummy(answers):
    return PB2.LmConfig(dummy=PB2.DummyLmConfig(answers=to_proto(PB2, answers)))


def args(**kwargs):
    return to_proto(PB2, kwargs).map


async def new_session(stub, sid="d"):
    await stub.InitializeSession(PB2.InitializeSessionRequest(session_id=sid))


def test_wire_types_become_python_types():
    from typing import Literal, Optional

    types = TypeBuilder([ENTITY])
    entities = types.annotation(t(("list", ("object", "Entity"))))
    model = entities.__args__[0]
    assert model.__name__ == "Entity"
    assert model.model_fields["name"].description == "Its name."
    assert model.model_fields["aliases"].annotation == list[str]
    assert types.annotation(t(("object", "Entity"))) is model, "each object type is built once"
    assert types.annotation(t(("map", "float"))) == dict[str, float]
    assert types.annotation(t(("optional", "int"))) == Optional[int]  # noqa: UP045
    assert types.annotation(t(("literal", ["a", "b"]))) == Literal["a", "b"]
    assert types.annotation(PB2.TypeRef()) is str


def test_an_object_type_the_signature_does_not_define_is_an_error():
    import pytest

    from snakepit_bridge.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="not defined"):
        TypeBuilder([]).annotation(t(("object", "Missing")))


def test_predict_returns_typed_fields_usage_and_history():
    async def scenario():
        async with running_server() as (stub, _):
            await new_session(stub)
            created = await stub.CreateInstance(
                PB2.CreateInstanceRequest(
                    session_id="d", class_path="dspy.Predict", signature=qa_spec(), lm=dummy([GOOD])
                )
            )
            reply = await stub.CallInstance(
                PB2.CallInstanceRequest(
                    session_id="d",
                    instance_id=created.instance.id,
                    kwargs=args(question="Capital of France?"),
                    options=PB2.CallOptions(history=True),
                )
            )
            return created, reply

    created, reply = run(scenario)
    assert created.instance.type_name.endswith("Predict")
    out = from_proto(PB2, reply.value)
    assert out == {
        "answer": "Paris",
        "confidence": 0.9,
        "n": 3,
        "tags": ["a", "b"],
        "label": "pos",
        "maybe": None,
        "scores": {"x": 1.5},
        "entities": [{"name": "France", "aliases": ["FR"]}],
    }
    assert reply.usage.lm_calls == 1
    assert "Capital of France?" in str(from_proto(PB2, reply.history[0].messages))
    assert "[[ ## answer ## ]]" in reply.history[0].outputs[0]


def test_a_literal_outside_its_set_is_a_parse_error_with_field_and_raw_text():
    bad = dict(GOOD, label="maybe")

    async def scenario():
        async with running_server() as (stub, _):
            return await stub.RunModule(
                PB2.RunModuleRequest(
                    class_path="dspy.Predict",
                    signature=qa_spec(),
                    inputs=args(question="q"),
                    options=PB2.CallOptions(lm=dummy([bad])),
                )
            )

    reply = run(scenario)
    assert reply.error.kind == PB2.ERROR_KIND_PARSE_FAILED
    assert reply.error.field == "label"
    assert "maybe" in reply.error.raw_output


def test_chain_of_thought_adds_reasoning():
    async def scenario():
        async with running_server() as (stub, _):
            spec = PB2.SignatureSpec(
                inputs=[field("question", "str")],
                outputs=[field("answer", "str")],
            )
            return await stub.RunModule(
                PB2.RunModuleRequest(
                    class_path="dspy.ChainOfThought",
                    signature=spec,
                    inputs=args(question="q"),
                    options=PB2.CallOptions(
                        lm=dummy([{"reasoning": "because", "answer": "42"}])
                    ),
                )
            )

    out = from_proto(PB2, run(scenario).value)
    assert out == {"reasoning": "because", "answer": "42"}


def test_batch_keeps_input_order_with_per_item_errors():
    async def scenario():
        async with running_server() as (stub, _):
            await new_session(stub)
            spec = PB2.SignatureSpec(
                inputs=[field("question", "str")],
                outputs=[field("n", "int")],
            )
            answers = {f"question-<{i}>": {"n": str(i)} for i in range(30)}
            answers["question-bad"] = {"n": "not a number"}
            created = await stub.CreateInstance(
                PB2.CreateInstanceRequest(
                    session_id="d", class_path="dspy.Predict", signature=spec, lm=dummy(answers)
                )
            )
            inputs = [args(question=f"question-<{i}>") for i in range(30)]
            inputs.insert(5, args(question="question-bad"))
            return await stub.BatchCall(
                PB2.BatchRequest(session_id="d", instance_id=created.instance.id, inputs=inputs)
            )

    results = run(scenario).results
    assert len(results) == 31
    assert results[5].error.kind == PB2.ERROR_KIND_PARSE_FAILED
    ok = [from_proto(PB2, r.value)["n"] for i, r in enumerate(results) if i != 5]
    assert ok == list(range(30))


def test_unknown_classes_and_methods_are_clear_errors():
    async def scenario():
        async with running_server() as (stub, _):
            await new_session(stub)
            missing_module = await stub.CreateInstance(
                PB2.CreateInstanceRequest(session_id="d", class_path="nowhere.Thing")
            )
            missing_class = await stub.CreateInstance(
                PB2.CreateInstanceRequest(session_id="d", class_path="dspy.NoSuchModule")
            )
            created = await stub.CreateInstance(
                PB2.CreateInstanceRequest(session_id="d", class_path="collections.Counter")
            )
            missing_method = await stub.CallInstance(
                PB2.CallInstanceRequest(
                    session_id="d", instance_id=created.instance.id, method="fly"
                )
            )
            return missing_module, missing_class, missing_method

    missing_module, missing_class, missing_method = run(scenario)
    assert missing_module.error.kind == PB2.ERROR_KIND_NOT_FOUND
    assert "nowhere" in missing_module.error.message
    assert missing_class.error.kind == PB2.ERROR_KIND_NOT_FOUND
    assert missing_method.error.kind == PB2.ERROR_KIND_NOT_FOUND


def test_failing_field_finds_the_first_bad_section():
    from snakepit_bridge.signature import build_signature

    signature = build_signature(PB2, qa_spec())
    raw = "[[ ## answer ## ]]\nParis\n\n[[ ## confidence ## ]]\nhigh"
    assert failing_field(signature, raw) == "confidence"


def test_the_global_history_of_dspy_stays_bounded():
    from dspy.clients import base_lm

    import dspy

    from snakepit_bridge.dspy_loading import load_dspy
    from snakepit_bridge.instance import DspyRuntime
    from snakepit_bridge.lm import build_lm

    load_dspy()
    assert base_lm.MAX_HISTORY_SIZE == 200
    runtime = DspyRuntime(PB2)
    spec = PB2.SignatureSpec(
        inputs=[field("question", "str")],
        outputs=[field("answer", "str")],
    )
    module = runtime.create("dspy.Predict", runtime.signature(b"history-test", spec), [], {}, {}, None)
    lm = build_lm(PB2, dummy({"q": {"answer": "a"}}))
    for _ in range(450):
        run(lambda: runtime.call(module, "", [], {"question": "q"}, lm))
    # 450 requests were recorded, and exactly the last 200 kept (not none).
    assert len(base_lm.GLOBAL_HISTORY) == 200
    assert len(module.history) == 200, "the module's own history is bounded too"
    assert len(dspy.settings.trace) == 0, "calls do not add to DSPy's global trace"


def test_cached_modules_keep_no_history_and_the_caches_are_bounded():
    from snakepit_bridge.definitions import Definitions
    from snakepit_bridge.lru import LruCache
    from snakepit_bridge.server import BridgeServicer

    servicer = BridgeServicer("t.0", "r")
    servicer.dspy._modules = LruCache(3)
    servicer.dspy.definitions = Definitions(2)

    def request(i: int):
        spec = PB2.SignatureSpec(
            name=f"S{i}",
            inputs=[field("question", "str")],
            outputs=[field("answer", "str")],
        )
        return PB2.RunModuleRequest(
            class_path="dspy.Predict",
            signature=spec,
            inputs=to_proto(PB2, {"question": "q"}).map,
            options=PB2.CallOptions(lm=dummy({"q": {"answer": "a"}})),
        )

    for i in range(5):
        for _ in range(3):
            response = run(lambda: servicer.RunModule(request(i), None))
            assert response.WhichOneof("result") == "value", response
    assert len(servicer.dspy._modules) == 3, "only the 3 most recent modules are kept"
    key = next(iter(servicer.dspy._modules._entries))
    module = servicer.dspy._modules.get(key)
    assert module.history == [], "a cached module keeps no prompts"
    assert len(servicer.dspy.definitions) == 2, "only the 2 most recent signatures are kept"


def test_a_signature_crosses_once_and_is_named_by_its_hash_afterwards():
    from snakepit_bridge.server import BridgeServicer

    servicer = BridgeServicer("t.0", "r")
    spec = PB2.SignatureSpec(
        name="QA", inputs=[field("question", "str")], outputs=[field("answer", "str")]
    )

    def request(with_definition: bool):
        return PB2.RunModuleRequest(
            class_path="dspy.Predict",
            signature=spec if with_definition else None,
            signature_hash=b"h" * 32,
            inputs=to_proto(PB2, {"question": "q"}).map,
            options=PB2.CallOptions(lm=dummy({"q": {"answer": "a"}})),
        )

    unknown = run(lambda: servicer.RunModule(request(False), None))
    assert unknown.error.kind == PB2.ERROR_KIND_UNKNOWN_DEFINITION
    registered = run(lambda: servicer.RunModule(request(True), None))
    assert from_proto(PB2, registered.value) == {"answer": "a"}
    by_hash = run(lambda: servicer.RunModule(request(False), None))
    assert from_proto(PB2, by_hash.value) == {"answer": "a"}
    assert len(servicer.dspy.definitions) == 1
