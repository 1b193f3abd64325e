#![allow(missing_docs)]
//! Programs with Rust control flow, evaluated, tuned by DSPy's own optimisers with a Rust metric,
//! saved and loaded in DSPy's format: real DSPy in real workers, with DummyLM.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dspex::prelude::*;
use dspex::{CallOptions, StateError, Value};
use dspex_tests::rag::{
    Answer, AnswerInput, AnswerOutput, Rag, Rewrite, RewriteInput, exact, example,
};
use support::run;
use tokio::sync::OnceCell;

type Ex = dspex_tests::rag::Ex;

static DSPEX: OnceCell<Dspex> = OnceCell::const_new();

fn map(pairs: &[(&str, &str)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect(),
    )
}

/// The LM: a question `<qN>` is rewritten to `find-qN`, answered `aN`. (Keys are matched in
/// order against the last message; the answer step's message holds both, so its key comes
/// first.)
fn rag_lm(tag: &str) -> Lm {
    let mut answers = dspex::__private::Map::new();
    for i in 0..40 {
        answers.insert(
            format!("find-{tag}{i}\n"),
            map(&[("reasoning", "because"), ("answer", &format!("a{i}"))]),
        );
    }
    for i in 0..40 {
        answers.insert(
            format!("<{tag}{i}>"),
            map(&[("query", &format!("find-{tag}{i}"))]),
        );
    }
    Lm::dummy(Value::Map(answers))
}

async fn start(workers: usize) -> Dspex {
    Dspex::builder()
        .lm(rag_lm("q"))
        .workers(workers)
        .python_path(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python"))
        .import("dspex_test_rag")
        .start()
        .await
        .expect("dspex starts")
}

/// Two workers shared by the tests of this binary.
async fn dspex() -> &'static Dspex {
    DSPEX.get_or_init(|| start(2)).await
}

#[test]
fn a_rust_program_runs_its_control_flow_and_batches() {
    run(async {
        let rag = Rag::new(dspex().await);
        let out = rag.forward(example("q", 3, "").input).await.unwrap();
        assert_eq!(out.answer, "a3");
        let outs = rag
            .batch((0..5).map(|i| example("q", i, "").input).collect())
            .await;
        let answers: Vec<String> = outs.into_iter().map(|o| o.unwrap().answer).collect();
        assert_eq!(answers, ["a0", "a1", "a2", "a3", "a4"]);
        let names: Vec<String> = rag.predictors().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["rewrite", "answer.predict"]);
    })
}

#[test]
fn bootstrap_few_shot_tunes_both_predictors_with_a_rust_metric() {
    run(async {
        let dspex = dspex().await;
        let rag = Rag::new(dspex);
        // Example 0 expects a wrong answer: the metric fails it, and it is not bootstrapped.
        let trainset = vec![
            example("q", 0, "wrong"),
            example("q", 1, "a1"),
            example("q", 2, "a2"),
            example("q", 3, "a3"),
        ];
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let metric = move |ex: &Ex, out: &AnswerOutput| {
            counted.fetch_add(1, Ordering::SeqCst);
            exact(ex, out)
        };
        let progress = Arc::new(AtomicUsize::new(0));
        let seen = progress.clone();
        let compiled = BootstrapFewShot::new(metric)
            .max_bootstrapped_demos(2)
            .max_labeled_demos(0)
            .on_progress(move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
            })
            .compile(&rag, &trainset)
            .await
            .unwrap();
        // One metric call per candidate: example 0 (failed), 1 and 2 (passed, and then two
        // demos are enough).
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(progress.load(Ordering::SeqCst), 3);
        let predictors = compiled.predictors();
        let rewrite = predictors[0].1.demos();
        let answer = predictors[1].1.demos();
        assert_eq!(rewrite.len(), 2, "{rewrite:?}");
        assert_eq!(answer.len(), 2, "{answer:?}");
        assert_eq!(rewrite[0]["question"], "<q1>");
        assert_eq!(rewrite[0]["query"], "find-q1");
        assert_eq!(rewrite[0]["augmented"], true);
        assert_eq!(answer[1]["question"], "<q2>");
        assert_eq!(answer[1]["reasoning"], "because");
        assert_eq!(answer[1]["answer"], "a2");
        // The student is untouched.
        assert!(rag.predictors().iter().all(|(_, p)| p.demos().is_empty()));
        // A compiled call's prompt carries the demos.
        let input = AnswerInput {
            question: "<q5>".into(),
            query: "find-q5".into(),
        };
        let prediction = predictors[1]
            .1
            .run(
                dspex::SignatureInput::to_inputs(&input),
                &CallOptions::default().with_history(),
            )
            .await
            .unwrap();
        let prompt = format!("{:?}", prediction.history[0].messages);
        assert!(
            prompt.contains("find-q1") && prompt.contains("<q2>"),
            "{prompt}"
        );
        // And the compiled program runs on every worker.
        let outs = compiled
            .batch((5..15).map(|i| example("q", i, "").input).collect())
            .await;
        assert!(outs.iter().all(Result::is_ok), "{outs:?}");
    })
}

#[test]
fn a_saved_program_loads_into_a_fresh_pool_and_into_python() {
    run(async {
        let dspex = dspex().await;
        let trainset: Vec<Ex> = (1..4).map(|i| example("q", i, &format!("a{i}"))).collect();
        let compiled = BootstrapFewShot::new(exact)
            .max_bootstrapped_demos(2)
            .max_labeled_demos(1)
            .compile(&Rag::new(dspex), &trainset)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rag.json");
        compiled.save(&path).unwrap();

        let fresh = start(1).await;
        let again = Rag::load(&fresh, &path).unwrap();
        for ((_, a), (_, b)) in compiled.predictors().iter().zip(again.predictors()) {
            assert_eq!(a.state(), b.state());
        }
        let inputs: Vec<RewriteInput> = (5..9).map(|i| example("q", i, "").input).collect();
        let before: Vec<_> = compiled.batch(inputs.clone()).await;
        let after: Vec<_> = again.batch(inputs).await;
        assert_eq!(format!("{before:?}"), format!("{after:?}"));
        fresh.shutdown().await.unwrap();

        // Rust → Python DSPy → Rust.
        let resaved = dir.path().join("resaved.json");
        let mut args = dspex::__private::Map::new();
        args.insert("load_from".into(), path.display().to_string().into());
        args.insert("save_to".into(), resaved.display().to_string().into());
        let seen = dspex
            .bridge()
            .call_tool("rag_load_and_save", args)
            .await
            .unwrap();
        let Value::Map(seen) = seen else {
            panic!("{seen:?}")
        };
        let Value::List(rewrite) = &seen["rewrite_demos"] else {
            panic!("{seen:?}")
        };
        assert_eq!(rewrite.len(), compiled.predictors()[0].1.demos().len());
        let back = Rag::load(dspex, &resaved).unwrap();
        for ((_, a), (_, b)) in compiled.predictors().iter().zip(back.predictors()) {
            assert_eq!(a.state(), b.state());
        }

        // Python DSPy → Rust.
        let from_python = dir.path().join("python.json");
        let mut args = dspex::__private::Map::new();
        args.insert("save_to".into(), from_python.display().to_string().into());
        dspex
            .bridge()
            .call_tool("rag_save_fresh", args)
            .await
            .unwrap();
        let loaded = Rag::load(dspex, &from_python).unwrap();
        let answer = loaded.predictors()[1].1.state();
        assert_eq!(answer.instructions, "Answer like Python would.");
        assert_eq!(answer.demos[0]["answer"], "from-python");
        // A fresh Rust program saves what a fresh Python one would (prefixes, descriptions,
        // default instructions), apart from the instructions we gave ours.
        let fresh_state = Rag::new(dspex).predictors()[0].1.state();
        let python_state = loaded.predictors()[0].1.state();
        assert_eq!(fresh_state.fields, python_state.fields);
    })
}

/// Two predictors named differently: a file of `Rag` does not fit it.
#[dspy_module]
pub struct Other {
    first: Predict<Rewrite>,
}

#[test]
fn a_file_for_another_program_is_refused_with_what_does_not_fit() {
    run(async {
        let dspex = dspex().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rag.json");
        Rag::new(dspex).save(&path).unwrap();
        let error = Other::load(dspex, &path).unwrap_err();
        assert!(
            matches!(&error, Error::State(StateError::Missing { predictor, .. }) if predictor == "first"),
            "{error}"
        );
        // Same names, other fields: a ChainOfThought of Rewrite at `answer` has 3 fields, not 4.
        #[dspy_module]
        struct Narrow {
            rewrite: Predict<Rewrite>,
            answer: ChainOfThought<Rewrite>,
        }
        let error = Narrow::load(dspex, &path).unwrap_err();
        assert!(
            matches!(&error, Error::State(StateError::FieldCount { predictor, expected: 3, found: 4, .. }) if predictor == "answer.predict"),
            "{error}"
        );
        std::fs::write(&path, "not json").unwrap();
        assert!(matches!(
            Rag::load(dspex, &path).unwrap_err(),
            Error::State(StateError::NotAProgram { .. })
        ));
    })
}

#[test]
fn evaluate_counts_failures_apart_from_low_scores() {
    run(async {
        let rag = Rag::new(dspex().await);
        // 6 answered right, 2 answered wrong, 2 the LM cannot answer (no key: a parse failure).
        let mut devset: Vec<Ex> = (0..6).map(|i| example("q", i, &format!("a{i}"))).collect();
        devset.push(example("q", 6, "nope"));
        devset.push(example("q", 7, "nope"));
        devset.push(example("unknown", 1, "a1"));
        devset.push(example("unknown", 2, "a2"));
        let done = Arc::new(AtomicUsize::new(0));
        let seen = done.clone();
        let report = Evaluate::new(&devset, exact)
            .concurrency(4)
            .on_progress(move |p| {
                seen.fetch_max(p.done, Ordering::SeqCst);
            })
            .run(&rag)
            .await
            .unwrap();
        assert_eq!(report.failed, 2);
        assert_eq!(report.results.len(), 10);
        assert!((report.score - 6.0 / 10.0).abs() < 1e-9, "{}", report.score);
        assert!((report.answered_score - 6.0 / 8.0).abs() < 1e-9);
        assert_eq!(report.results[8].score(), None);
        assert_eq!(report.results[6].score(), Some(0.0));
        assert_eq!(done.load(Ordering::SeqCst), 10);

        // A metric that fails is an error naming the example, not a low score.
        let nan = |ex: &Ex, _: &AnswerOutput| {
            if ex.input.question == "<q4>" {
                f64::NAN
            } else {
                1.0
            }
        };
        let error = Evaluate::new(&devset[..6], nan)
            .run(&rag)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::Metric { example, message } if example == "example #4" && message.contains("NaN")),
            "{error}"
        );
    })
}

#[test]
fn a_metric_that_panics_or_an_empty_trainset_fails_the_compilation_clearly() {
    run(async {
        let rag = Rag::new(dspex().await);
        let trainset: Vec<Ex> = (1..4).map(|i| example("q", i, &format!("a{i}"))).collect();
        let panics = |ex: &Ex, _: &AnswerOutput| -> f64 {
            if ex.input.question == "<q2>" {
                panic!("no score for q2")
            }
            0.0
        };
        let error = tokio::time::timeout(
            Duration::from_secs(60),
            BootstrapFewShot::new(panics).compile(&rag, &trainset),
        )
        .await
        .expect("no hang")
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("trainset example #1") && text.contains("no score for q2"),
            "{text}"
        );
        let error = BootstrapFewShot::new(exact)
            .compile(&rag, &[])
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::Compile { message, .. } if message.contains("empty")),
            "{error}"
        );
        // The pool still serves.
        assert_eq!(
            rag.forward(example("q", 9, "").input).await.unwrap().answer,
            "a9"
        );
    })
}

/// A program inside a program: its predictors are named under its field.
#[dspy_module]
pub struct Outer {
    inner: Rag,
    check: Predict<Rewrite>,
}

#[test]
fn nested_programs_name_their_predictors_as_dspy_does() {
    run(async {
        let outer = Outer::new(dspex().await);
        let names: Vec<String> = outer.predictors().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["inner.rewrite", "inner.answer.predict", "check"]);
        // A ChainOfThought alone is `predict`, a Predict alone is `self` (and saved as its state).
        let cot = ChainOfThought::<Answer>::new(dspex().await);
        assert_eq!(cot.predictors()[0].0, "predict");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("predict.json");
        Predict::<Rewrite>::new(dspex().await).save(&path).unwrap();
        let saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(
            saved.get("signature").is_some() && saved.get("demos").is_some(),
            "{saved}"
        );
        Predict::<Rewrite>::load(dspex().await, &path).unwrap();
    })
}

#[test]
fn an_async_metric_scores_like_a_sync_one() {
    run(async {
        let rag = Rag::new(dspex().await);
        let devset: Vec<Ex> = (0..4)
            .map(|i| example("q", i, if i < 3 { "x" } else { "a3" }))
            .collect();
        let judged = dspex::metric::from_async(|ex: Ex, out: AnswerOutput| async move {
            tokio::task::yield_now().await;
            ex.output.answer == out.answer
        });
        let report = Evaluate::new(&devset, judged).run(&rag).await.unwrap();
        assert!((report.score - 0.25).abs() < 1e-9, "{}", report.score);
    })
}

/// Answer questions.
#[dspy_signature]
pub struct Ask {
    #[input]
    pub question: String,
    #[output]
    pub answer: String,
}

#[dspy_type]
pub struct Lookup {
    pub term: String,
}

#[test]
fn react_runs_rust_tools_and_is_dspy_s_react() {
    use dspex::react::{ReAct, Tool};
    run(async {
        let dspex = dspex().await;
        let looked_up = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = looked_up.clone();
        let lookup = Tool::new("lookup", "Looks a term up.", move |args: Lookup| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(args.term.clone());
                Ok::<_, String>(format!("{} is a planet", args.term))
            }
        });
        let mut answers = dspex::__private::Map::new();
        answers.insert(
            "starting with the field `[[ ## reasoning ## ]]`".into(),
            map(&[("reasoning", "it said so"), ("answer", "a planet")]),
        );
        answers.insert(
            "[[ ## observation_0 ## ]]".into(),
            map(&[
                ("next_thought", "done"),
                ("next_tool_name", "finish"),
                ("next_tool_args", "{}"),
            ]),
        );
        answers.insert(
            "<react1>".into(),
            map(&[
                ("next_thought", "look it up"),
                ("next_tool_name", "lookup"),
                ("next_tool_args", r#"{"term": "Mars"}"#),
            ]),
        );
        let agent = ReAct::<Ask>::with_tools(dspex, vec![lookup]).max_iters(4);
        let agent = agent.__map("", &mut |_, p| {
            p.with_lm(Lm::dummy(Value::Map(answers.clone())))
        });
        let acted = agent
            .call(AskInput {
                question: "What is <react1>?".into(),
            })
            .await
            .unwrap();
        assert_eq!(looked_up.lock().unwrap().as_slice(), ["Mars"]);
        assert_eq!(acted.trajectory.len(), 2, "{acted:?}");
        assert_eq!(acted.trajectory[0].observation, "Mars is a planet");
        assert_eq!(acted.trajectory[1].tool, "finish");
        assert_eq!(acted.output.answer, "a planet");

        // The same state as DSPy's own ReAct with the same tool: instructions (the tool listed
        // with its real argument names and types), fields, prefixes.
        let mut args = dspex::__private::Map::new();
        args.insert("instructions".into(), "Answer questions.".into());
        let python = dspex.bridge().call_tool("react_state", args).await.unwrap();
        let python = serde_json::Value::from(python);
        for (name, predictor) in agent.predictors() {
            let ours = predictor.state().to_json();
            assert_eq!(
                ours["signature"], python[&name]["signature"],
                "{name}: ours {ours:#}, DSPy's {:#}",
                python[&name]
            );
        }
        let instructions = agent.predictors()[0].1.state().instructions;
        assert!(
            instructions.contains("It takes arguments {'term': {'type': 'string'}}"),
            "{instructions}"
        );
    })
}
