//! DSPy through real workers with DummyLM: typed results, parse errors, LM overrides, modules,
//! ReAct with Python and Rust tools, generic objects, concurrency and batches.

mod common;

use std::collections::HashSet;

use common::{builder, run};
use snakepit_grpc_bridge::api::dspy::{
    CallOptions, FieldSpec, FieldType, Lm, ObjectField, ObjectType, SignatureSpec,
};
use snakepit_grpc_bridge::{Bridge, BridgeError, Map, Value, args};
use tokio::sync::OnceCell;

const CONCURRENT: usize = 500;

static BRIDGE: OnceCell<Bridge> = OnceCell::const_new();

/// Two workers whose pool LM answers each `<q N>` question with `a N`.
async fn bridge() -> &'static Bridge {
    BRIDGE
        .get_or_init(|| async {
            let answers: Map = (0..CONCURRENT)
                .map(|i| {
                    (
                        format!("<q{i}>"),
                        Value::Map(args([("answer", format!("a{i}"))])),
                    )
                })
                .collect();
            builder()
                .workers(2)
                .import("bridge_test_program")
                .lm(Lm::dummy(Value::Map(answers)))
                .start()
                .await
                .expect("bridge starts")
        })
        .await
}

fn simple() -> SignatureSpec {
    SignatureSpec::new("Simple")
        .input("question", FieldType::String)
        .output("answer", FieldType::String)
}

fn entity() -> FieldType {
    FieldType::Object(ObjectType {
        name: "Entity".into(),
        fields: vec![
            ObjectField {
                name: "name".into(),
                field_type: FieldType::String,
                description: Some("The entity's name.".into()),
            },
            ObjectField {
                name: "kind".into(),
                field_type: FieldType::literal(["person", "place"]),
                description: None,
            },
            ObjectField {
                name: "aliases".into(),
                field_type: FieldType::list(FieldType::String),
                description: None,
            },
        ],
    })
}

fn every_type() -> SignatureSpec {
    SignatureSpec::new("EveryType")
        .instructions("Exercise every field type.")
        .input_field(FieldSpec::new("text", FieldType::String).description("Some text."))
        .input("count", FieldType::Integer)
        .output("s", FieldType::String)
        .output("i", FieldType::Integer)
        .output("f", FieldType::Float)
        .output("b", FieldType::Boolean)
        .output("tags", FieldType::list(FieldType::String))
        .output("scores", FieldType::map(FieldType::Float))
        .output("maybe", FieldType::optional(FieldType::Integer))
        .output(
            "label",
            FieldType::literal(["positive", "negative", "neutral"]),
        )
        .output("entities", FieldType::list(entity()))
}

fn every_answer() -> Value {
    Value::Map(args([
        ("s", Value::from("hello")),
        ("i", Value::from("42")),
        ("f", Value::from("0.25")),
        ("b", Value::from("true")),
        ("tags", Value::from(r#"["x", "y"]"#)),
        ("scores", Value::from(r#"{"a": 1.5, "b": 2}"#)),
        ("maybe", Value::from("None")),
        ("label", Value::from("neutral")),
        (
            "entities",
            Value::from(r#"[{"name": "Ada", "kind": "person", "aliases": ["Countess"]}]"#),
        ),
    ]))
}

#[test]
fn predict_returns_every_field_type_exactly() {
    run(async {
        let session = bridge().await.create_session().await.unwrap();
        let lm = Lm::dummy(vec![every_answer()]);
        let predict = session.predict(&every_type(), Some(&lm)).await.unwrap();
        let out = predict
            .call(args([
                ("text", Value::from("t")),
                ("count", Value::from(3)),
            ]))
            .await
            .unwrap();
        let o = &out.outputs;
        assert_eq!(o["s"], Value::from("hello"));
        assert_eq!(o["i"], Value::Int(42), "an int stays an int");
        assert_eq!(o["f"], Value::Float(0.25));
        assert_eq!(o["b"], Value::Bool(true));
        assert_eq!(o["tags"], Value::from(vec!["x", "y"]));
        assert_eq!(o["scores"], Value::Map(args([("a", 1.5), ("b", 2.0)])));
        assert_eq!(o["maybe"], Value::Null);
        assert_eq!(o["label"], Value::from("neutral"));
        let ada = Value::Map(args([
            ("name", Value::from("Ada")),
            ("kind", Value::from("person")),
            ("aliases", Value::from(vec!["Countess"])),
        ]));
        assert_eq!(o["entities"], Value::List(vec![ada]));
        assert_eq!(out.usage.lm_calls, 1);
    })
}

#[test]
fn an_answer_that_does_not_fit_is_a_parse_error_with_the_field_and_raw_text() {
    run(async {
        let session = bridge().await.create_session().await.unwrap();
        for (field, bad) in [
            ("label", "ecstatic"),
            ("i", "forty-two"),
            ("entities", "not json"),
        ] {
            let mut answer = every_answer();
            if let Value::Map(m) = &mut answer {
                m.insert(field.into(), Value::from(bad));
            }
            let predict = session
                .predict(&every_type(), Some(&Lm::dummy(vec![answer])))
                .await
                .unwrap();
            let err = predict
                .call(args([
                    ("text", Value::from("t")),
                    ("count", Value::from(1)),
                ]))
                .await
                .unwrap_err();
            match err {
                BridgeError::ParseFailed {
                    field: reported,
                    raw_output,
                    ..
                } => {
                    assert_eq!(reported, field);
                    assert!(raw_output.contains(bad), "{raw_output}");
                }
                other => panic!("expected ParseFailed for {field}, got {other:?}"),
            }
        }
    })
}

#[test]
fn a_call_can_override_the_lm_and_ask_for_history() {
    run(async {
        let session = bridge().await.create_session().await.unwrap();
        let own = Lm::dummy(vec![
            Value::Map(args([("answer", "from the instance")])),
            Value::Map(args([("answer", "from the instance again")])),
        ]);
        let predict = session.predict(&simple(), Some(&own)).await.unwrap();
        let other = Lm::dummy(vec![Value::Map(args([("answer", "from the call")]))]);
        let overridden = predict
            .call_with(
                args([("question", "q?")]),
                &CallOptions::default().lm(other).with_history(),
            )
            .await
            .unwrap();
        assert_eq!(overridden.outputs["answer"], Value::from("from the call"));
        assert_eq!(overridden.history.len(), 1);
        assert!(overridden.history[0].outputs[0].contains("from the call"));
        assert!(format!("{:?}", overridden.history[0].messages).contains("q?"));
        let normal = predict.call(args([("question", "q?")])).await.unwrap();
        assert_eq!(normal.outputs["answer"], Value::from("from the instance"));
        assert!(normal.history.is_empty(), "history only when asked");
    })
}

#[test]
fn chain_of_thought_returns_its_reasoning_apart() {
    run(async {
        let session = bridge().await.create_session().await.unwrap();
        let lm = Lm::dummy(vec![Value::Map(args([
            ("reasoning", "Paris is the capital."),
            ("answer", "Paris"),
        ]))]);
        let cot = session
            .chain_of_thought(&simple(), Some(&lm))
            .await
            .unwrap();
        let out = cot
            .call(args([("question", "Capital of France?")]))
            .await
            .unwrap();
        assert_eq!(out.reasoning(), Some("Paris is the capital."));
        assert_eq!(out.outputs["answer"], Value::from("Paris"));

        // Every field type through ChainOfThought too.
        let mut answer = every_answer();
        if let Value::Map(m) = &mut answer {
            m.insert("reasoning".into(), Value::from("step by step"));
        }
        let cot = session
            .chain_of_thought(&every_type(), Some(&Lm::dummy(vec![answer])))
            .await
            .unwrap();
        let out = cot
            .call(args([
                ("text", Value::from("t")),
                ("count", Value::from(2)),
            ]))
            .await
            .unwrap();
        assert_eq!(out.reasoning(), Some("step by step"));
        assert_eq!(out.outputs["i"], Value::Int(42));
        assert_eq!(out.outputs["tags"], Value::from(vec!["x", "y"]));
        assert_eq!(out.outputs["maybe"], Value::Null);
        assert_eq!(out.outputs["entities"].as_list().unwrap().len(), 1);
    })
}

#[test]
fn react_calls_a_python_tool_and_a_rust_tool() {
    run(async {
        let session = bridge().await.create_session().await.unwrap();
        session
            .register_rust_tool("triple", "Triples x.", |a| async move {
                Ok(Value::from(
                    a["x"].as_i64().ok_or("x must be an integer")? * 3,
                ))
            })
            .await
            .unwrap();
        let step = |thought: &str, tool: &str, tool_args: Value| {
            Value::Map(args([
                ("next_thought", Value::from(thought)),
                ("next_tool_name", Value::from(tool)),
                ("next_tool_args", tool_args),
            ]))
        };
        let lm = Lm::dummy(vec![
            step("add first", "add", Value::Map(args([("a", 2), ("b", 3)]))),
            step("then triple", "triple", Value::Map(args([("x", 5)]))),
            step("done", "finish", Value::Map(Map::new())),
            Value::Map(args([("reasoning", "2+3=5, 5*3=15"), ("answer", "15")])),
        ]);
        let react = session
            .react(&simple(), &["add", "triple"], 5, Some(&lm))
            .await
            .unwrap();
        let out = react.call(args([("question", "(2+3)*3?")])).await.unwrap();
        assert_eq!(out.outputs["answer"], Value::from("15"));
        let trajectory = out.outputs["trajectory"].as_map().unwrap();
        assert_eq!(trajectory["tool_name_0"], Value::from("add"));
        assert_eq!(
            trajectory["observation_0"],
            Value::Int(5),
            "the Python tool ran"
        );
        assert_eq!(trajectory["tool_name_1"], Value::from("triple"));
        assert_eq!(
            trajectory["observation_1"],
            Value::Int(15),
            "the Rust tool ran"
        );
        assert_eq!(out.usage.lm_calls, 4);
    })
}

#[test]
fn any_class_by_dotted_path_with_methods_attributes_and_handles() {
    run(async {
        let session = bridge().await.create_session().await.unwrap();
        // dspy.Predict through the generic path.
        let lm = Lm::dummy(vec![Value::Map(args([("answer", "generic")]))]);
        let predict = session
            .create_instance(
                "dspy.Predict",
                Some(&simple()),
                vec![],
                Map::new(),
                Some(&lm),
            )
            .await
            .unwrap();
        assert!(
            predict.type_name().ends_with("Predict"),
            "{}",
            predict.type_name()
        );
        let result = predict
            .call_method("__call__", vec![], args([("question", "q")]))
            .await
            .unwrap();
        assert_eq!(
            result.value.as_map().unwrap()["answer"],
            Value::from("generic")
        );
        assert_eq!(
            predict.get_attribute("demos").await.unwrap(),
            Value::List(vec![])
        );

        // A user class shipped in the test tree.
        let counter = session
            .create_instance(
                "bridge_test_program.Counter",
                None,
                vec![],
                args([("start", 10), ("step", 5)]),
                None,
            )
            .await
            .unwrap();
        let after = counter
            .call_method("increment", vec![Value::from(2)], Map::new())
            .await
            .unwrap();
        assert_eq!(after.value, Value::Int(20));
        assert_eq!(
            counter.get_attribute("value").await.unwrap(),
            Value::Int(20)
        );
        assert_eq!(
            counter
                .call_method("doubled", vec![], Map::new())
                .await
                .unwrap()
                .value,
            Value::Int(40)
        );
        let snapshot = counter
            .call_method("snapshot", vec![], Map::new())
            .await
            .unwrap()
            .value;
        let handle = snapshot.as_object().expect("an object handle").clone();
        assert!(
            handle.type_name.ends_with("Snapshot"),
            "{}",
            handle.type_name
        );
        let snapshot = session.object(handle);
        counter
            .call_method("increment", vec![], Map::new())
            .await
            .unwrap();
        assert_eq!(
            snapshot
                .call_method("read", vec![], Map::new())
                .await
                .unwrap()
                .value,
            Value::Int(20)
        );

        // Clear errors for what does not exist.
        let missing = counter
            .call_method("fly", vec![], Map::new())
            .await
            .unwrap_err();
        assert!(
            matches!(missing, BridgeError::NotFound { .. }),
            "{missing:?}"
        );
        let unknown = session
            .create_instance("dspy.NoSuchModule", None, vec![], Map::new(), None)
            .await
            .unwrap_err();
        assert!(
            matches!(unknown, BridgeError::NotFound { .. }),
            "{unknown:?}"
        );
        let wrong = session
            .create_instance(
                "bridge_test_program.Counter",
                None,
                vec![],
                args([("bogus", 1)]),
                None,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(wrong, BridgeError::InvalidArgument { .. }),
            "{wrong:?}"
        );
        counter.delete().await.unwrap();
    })
}

#[test]
fn best_of_n_wraps_another_instance_with_a_python_reward() {
    run(async {
        let session = bridge().await.create_session().await.unwrap();
        let lm = Lm::dummy(vec![
            Value::Map(args([("answer", "no")])),
            Value::Map(args([("answer", "maybe")])),
            Value::Map(args([("answer", "never reached")])),
        ]);
        let predict = session.predict(&simple(), None).await.unwrap();
        let mut kwargs = Map::new();
        kwargs.insert("module".into(), Value::Object(predict.object_ref().clone()));
        kwargs.insert("N".into(), Value::from(3));
        kwargs.insert("reward_fn".into(), Value::from("longest_answer"));
        kwargs.insert("threshold".into(), Value::from(1.0));
        let best = session
            .create_instance("dspy.BestOfN", None, vec![], kwargs, Some(&lm))
            .await
            .unwrap();
        let out = best.call(args([("question", "well?")])).await.unwrap();
        assert_eq!(
            out.outputs["answer"],
            Value::from("maybe"),
            "stops at the first reward >= 1"
        );
        assert_eq!(out.usage.lm_calls, 2);
    })
}

#[test]
fn five_hundred_concurrent_predictions_on_two_workers_get_their_own_answers() {
    run(async {
        let bridge = bridge().await;
        let before = bridge.pool().stats().requests;
        let tasks: Vec<_> = (0..CONCURRENT)
            .map(|i| {
                let bridge = bridge.clone();
                tokio::spawn(async move {
                    let out = bridge
                        .predict(&simple(), args([("question", format!("what is <q{i}>?"))]))
                        .await
                        .unwrap();
                    (i, out.outputs["answer"].clone())
                })
            })
            .collect();
        let mut seen = HashSet::new();
        for task in tasks {
            let (i, answer) = task.await.unwrap();
            assert_eq!(answer, Value::from(format!("a{i}")));
            seen.insert(i);
        }
        assert_eq!(seen.len(), CONCURRENT);
        assert!(bridge.pool().stats().requests - before >= CONCURRENT as u64);
    })
}

#[test]
fn a_batch_of_a_hundred_keeps_input_order() {
    run(async {
        let session = bridge().await.create_session().await.unwrap();
        let predict = session.predict(&simple(), None).await.unwrap();
        let inputs: Vec<Map> = (0..100)
            .rev()
            .map(|i| args([("question", format!("<q{i}>"))]))
            .collect();
        let results = predict
            .batch(&inputs, &CallOptions::default(), 0)
            .await
            .unwrap();
        assert_eq!(results.len(), 100);
        for (position, result) in results.into_iter().enumerate() {
            let expected = format!("a{}", 99 - position);
            assert_eq!(result.unwrap().outputs["answer"], Value::from(expected));
        }
    })
}

#[test]
fn a_module_without_any_lm_is_a_clear_error() {
    run(async {
        let bare = builder().workers(1).start().await.unwrap();
        let err = bare
            .predict(&simple(), args([("question", "q")]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no LM"), "{err}");
        bare.shutdown().await.unwrap();
    })
}
