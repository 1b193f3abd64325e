#![allow(missing_docs)]
//! The typed surface end to end: every field type through the macros, on real DSPy in real
//! workers, with DummyLM.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use dspex::prelude::*;
use dspex::{CallOptions, Value};
use tokio::runtime::Runtime;
use tokio::sync::OnceCell;

/// Answer questions with short factoid answers.
#[dspy_signature]
pub struct QA {
    /// The question to answer.
    #[input]
    pub question: String,
    #[output(desc = "often between 1 and 5 words")]
    pub answer: String,
    #[output]
    pub confidence: f64,
}

#[dspy_type]
pub enum Label {
    Positive,
    Negative,
    Neutral,
}

#[dspy_type]
pub struct Entity {
    /// The entity's name.
    pub name: String,
    pub kind: Label,
    pub aliases: Vec<String>,
}

#[dspy_type]
pub struct Document {
    pub title: String,
    pub entities: Vec<Entity>,
    pub scores: BTreeMap<String, f64>,
}

/// Exercise every supported field type.
#[dspy_signature]
pub struct EveryType {
    #[input]
    pub text: String,
    #[input]
    pub limit: u32,
    #[input(desc = "weights per key")]
    pub weights: HashMap<String, f32>,
    #[output]
    pub s: String,
    #[output]
    pub i8_: i8,
    #[output]
    pub i: i64,
    #[output]
    pub u: u16,
    #[output]
    pub f: f32,
    #[output]
    pub b: bool,
    #[output]
    pub tags: Vec<String>,
    #[output]
    pub nested: Vec<Vec<i32>>,
    #[output]
    pub maybe: Option<i64>,
    #[output]
    pub present: Option<String>,
    #[output]
    pub counts: HashMap<String, i64>,
    #[output]
    pub label: Label,
    #[output]
    pub document: Document,
}

defdspy! {
    /// A counter that lives in Python.
    #[python = "dspex_test_program.Counter"]
    pub struct Counter {
        /// Starts at `start`, counts by `step`.
        fn new(start: i64, step: i64);
        /// Counts `times` steps; returns the new value.
        fn call(times: i64) -> i64;
        #[python = "read"]
        fn value() -> i64;
        fn labels(prefix: String) -> Vec<String>;
        fn reset();
    }
}

// The README's own example, verbatim.
defdspy! {                                               // any Python class by dotted path
    /// Compare several attempts.
    #[python = "dspy.MultiChainComparison"]
    pub struct MultiChainComparison<S> {
        fn new(#[python = "M"] m: i64);                  // constructor keyword arguments (`M=`)
        fn call(completions: Vec<HashMap<String, String>>, input: S::Input) -> S::Output;
    }
}

defdspy! {
    /// `dspy.Predict` declared through defdspy!, generic over its signature.
    #[python = "dspy.Predict"]
    pub struct GenericPredict<S> {
        fn call(input: S::Input) -> S::Output;
    }
}

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| Runtime::new().expect("runtime"));
static DSPEX: OnceCell<Dspex> = OnceCell::const_new();

fn run<F: std::future::Future>(body: F) -> F::Output {
    RUNTIME.block_on(body)
}

fn answer(pairs: &[(&str, Value)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

/// Two workers; the pool LM answers `<qN>` questions with `aN`.
async fn dspex() -> &'static Dspex {
    DSPEX
        .get_or_init(|| async {
            let mut answers = dspex::__private::Map::new();
            for i in 0..50 {
                answers.insert(
                    format!("<q{i}>"),
                    answer(&[
                        ("answer", format!("a{i}").into()),
                        ("confidence", "0.75".into()),
                        ("reasoning", "because".into()),
                        ("rationale", "because".into()),
                    ]),
                );
            }
            Dspex::builder()
                .lm(Lm::dummy(Value::Map(answers)))
                .workers(2)
                .python_path(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python"))
                .import("dspex_test_program")
                .start()
                .await
                .expect("dspex starts")
        })
        .await
}

fn every_answer() -> Value {
    answer(&[
        ("s", "text".into()),
        ("i8_", "-8".into()),
        ("i", "9007199254740993".into()),
        ("u", "65535".into()),
        ("f", "0.5".into()),
        ("b", "false".into()),
        ("tags", r#"["a", "b"]"#.into()),
        ("nested", "[[1, 2], [], [3]]".into()),
        ("maybe", "None".into()),
        ("present", "here".into()),
        ("counts", r#"{"x": 1, "y": 2}"#.into()),
        ("label", "Negative".into()),
        (
            "document",
            r#"{"title": "T", "entities": [{"name": "Ada", "kind": "Positive", "aliases": ["A", "L"]}], "scores": {"z": 0.25}}"#.into(),
        ),
    ])
}

#[test]
fn predict_through_the_macros_is_typed() {
    run(async {
        let out: QAOutput = QA::predict(
            dspex().await,
            QAInput {
                question: "what is <q3>?".into(),
            },
        )
        .await
        .unwrap();
        assert_eq!(
            out,
            QAOutput {
                answer: "a3".into(),
                confidence: 0.75
            }
        );
    })
}

#[test]
fn lm_answers_can_be_written_as_json() {
    run(async {
        let lm = Lm::dummy(serde_json::json!([{"answer": "Paris", "confidence": "0.9"}]));
        let qa = Predict::<QA>::with_lm(dspex().await, lm);
        let out = qa
            .call(QAInput {
                question: "Capital of France?".into(),
            })
            .await
            .unwrap();
        assert_eq!(
            out,
            QAOutput {
                answer: "Paris".into(),
                confidence: 0.9
            }
        );
    })
}

#[test]
fn chain_of_thought_returns_reasoning_and_typed_output() {
    run(async {
        let r: Reasoned<QAOutput> = QA::chain_of_thought(
            dspex().await,
            QAInput {
                question: "<q4>".into(),
            },
        )
        .await
        .unwrap();
        assert_eq!(r.reasoning, "because");
        assert_eq!(r.output.answer, "a4");
    })
}

#[test]
fn every_field_type_round_trips_through_real_dspy() {
    run(async {
        let predict = Predict::<EveryType>::with_lm(dspex().await, Lm::dummy(vec![every_answer()]));
        let out = predict
            .call(EveryTypeInput {
                text: "t".into(),
                limit: 3,
                weights: HashMap::from([("w".to_owned(), 0.5)]),
            })
            .await
            .unwrap();
        let expected = EveryTypeOutput {
            s: "text".into(),
            i8_: -8,
            i: 9_007_199_254_740_993, // wider than 53 bits: exact, because ints never become floats
            u: 65535,
            f: 0.5,
            b: false,
            tags: vec!["a".into(), "b".into()],
            nested: vec![vec![1, 2], vec![], vec![3]],
            maybe: None,
            present: Some("here".into()),
            counts: HashMap::from([("x".to_owned(), 1), ("y".to_owned(), 2)]),
            label: Label::Negative,
            document: Document {
                title: "T".into(),
                entities: vec![Entity {
                    name: "Ada".into(),
                    kind: Label::Positive,
                    aliases: vec!["A".into(), "L".into()],
                }],
                scores: BTreeMap::from([("z".to_owned(), 0.25)]),
            },
        };
        assert_eq!(out, expected);
        let spec = <EveryType as Signature>::spec();
        assert_eq!(spec.instructions, "Exercise every supported field type.");
        assert_eq!(spec.inputs[2].description, "weights per key");
    })
}

#[test]
fn a_value_outside_its_rust_type_is_a_typed_error() {
    run(async {
        // 70000 parses as a Python int but does not fit the u16 field: a decode error naming it.
        let mut bad = every_answer();
        if let Value::Map(m) = &mut bad {
            m.insert("u".into(), "70000".into());
        }
        let predict = Predict::<EveryType>::with_lm(dspex().await, Lm::dummy(vec![bad]));
        let input = EveryTypeInput {
            text: "t".into(),
            limit: 1,
            weights: HashMap::new(),
        };
        match predict.call(input.clone()).await.unwrap_err() {
            Error::Decode { signature, source } => {
                assert_eq!(signature, "EveryType");
                assert_eq!(source.path, "u");
            }
            other => panic!("expected a decode error, got {other:?}"),
        }
        // A Literal outside the enum is DSPy's parse error, with the field and raw text.
        let mut bad = every_answer();
        if let Value::Map(m) = &mut bad {
            m.insert("label".into(), "Ecstatic".into());
        }
        let predict = Predict::<EveryType>::with_lm(dspex().await, Lm::dummy(vec![bad]));
        match predict.call(input).await.unwrap_err() {
            Error::Bridge(dspex::BridgeError::ParseFailed {
                field, raw_output, ..
            }) => {
                assert_eq!(field, "label");
                assert!(raw_output.contains("Ecstatic"));
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    })
}

#[test]
fn module_instances_live_in_sessions_and_take_per_call_lms() {
    run(async {
        let dspex = dspex().await;
        let qa = Predict::<QA>::new(dspex);
        let out = qa
            .call(QAInput {
                question: "<q7>".into(),
            })
            .await
            .unwrap();
        assert_eq!(out.answer, "a7");
        let other = Lm::dummy(vec![answer(&[
            ("answer", "override".into()),
            ("confidence", "1".into()),
        ])]);
        let out = qa
            .call_with(
                QAInput {
                    question: "<q7>".into(),
                },
                &CallOptions::default().lm(other),
            )
            .await
            .unwrap();
        assert_eq!(out.answer, "override");
        let cot = ChainOfThought::<QA>::new(dspex);
        let r = cot
            .call(QAInput {
                question: "<q8>".into(),
            })
            .await
            .unwrap();
        assert_eq!(
            (r.reasoning.as_str(), r.output.answer.as_str()),
            ("because", "a8")
        );
    })
}

#[test]
fn many_tasks_share_one_handle() {
    run(async {
        let dspex = dspex().await.clone();
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let dspex = dspex.clone();
                tokio::spawn(async move {
                    QA::predict(
                        &dspex,
                        QAInput {
                            question: format!("<q{i}>"),
                        },
                    )
                    .await
                    .map(|o| (i, o))
                })
            })
            .collect();
        for task in tasks {
            let (i, out) = task.await.unwrap().unwrap();
            assert_eq!(out.answer, format!("a{i}"));
        }
    })
}

#[test]
fn defdspy_wraps_a_python_class() {
    run(async {
        let counter = Counter::create(dspex().await, 10, 5).await.unwrap();
        assert_eq!(counter.call(2).await.unwrap(), 20);
        assert_eq!(counter.execute(1).await.unwrap(), 25);
        assert_eq!(counter.value().await.unwrap(), 25);
        counter.reset().await.unwrap();
        counter.call(1).await.unwrap();
        assert_eq!(
            counter.labels("n".into()).await.unwrap(),
            vec!["n0", "n1", "n2", "n3", "n4"]
        );
    })
}

#[test]
fn defdspy_wraps_a_dspy_module_generic_over_its_signature() {
    run(async {
        let predict = GenericPredict::<QA>::create(dspex().await).await.unwrap();
        let out: QAOutput = predict
            .call(QAInput {
                question: "<q9>".into(),
            })
            .await
            .unwrap();
        assert_eq!(out.answer, "a9");
    })
}

#[test]
fn the_readme_defdspy_example_passes_its_argument_under_its_python_name() {
    run(async {
        // `M=2` reaches Python: two attempts match (with `m=2`, M stayed 3 and this call failed).
        let mcc = MultiChainComparison::<QA>::create(dspex().await, 2)
            .await
            .unwrap();
        let attempt = |answer: &str| -> HashMap<String, String> {
            [
                ("reasoning".to_owned(), "it is known".to_owned()),
                ("answer".to_owned(), answer.to_owned()),
                ("confidence".to_owned(), "0.5".to_owned()),
            ]
            .into_iter()
            .collect()
        };
        let out: QAOutput = mcc
            .call(
                vec![attempt("x"), attempt("y")],
                QAInput {
                    question: "<q3>".into(),
                },
            )
            .await
            .unwrap();
        assert_eq!(out.answer, "a3");
    })
}
