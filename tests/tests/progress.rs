#![allow(missing_docs)]
//! Progress of long work as events, rendered by `dspex::progress::ProgressBar`: a batch reports
//! each input (and its failures), an evaluation each example; the bar draws them on a terminal
//! (an in-memory one here) and nothing when standard error is not a terminal.

mod support;

use std::io::IsTerminal;
use std::sync::Mutex;

use dspex::prelude::*;
use dspex::progress::{BatchProgress, ProgressBar};
use dspex::{Example, Value};
use indicatif::{InMemoryTerm, ProgressDrawTarget};
use support::{QA, QAInput, QAOutput, ask, builder, faulty_lm, numbered_answers, run};

fn in_memory_bar(label: &str) -> (ProgressBar, InMemoryTerm) {
    let term = InMemoryTerm::new(4, 100);
    let bar =
        ProgressBar::with_target(label, ProgressDrawTarget::term_like(Box::new(term.clone())));
    (bar, term)
}

#[test]
fn the_bar_draws_only_on_a_terminal() {
    let bar = ProgressBar::new("silent");
    assert_eq!(bar.is_hidden(), !std::io::stderr().is_terminal());
    let (bar, _) = in_memory_bar("drawn");
    assert!(!bar.is_hidden());
}

#[test]
fn a_batch_and_an_evaluation_report_each_item_and_the_bar_renders_them() {
    run(async {
        let mut answers = numbered_answers(5);
        answers.insert("<bad>".into(), Value::from("an answer without its fields"));
        let dspex = builder()
            .lm(faulty_lm(answers, &[]))
            .workers(1)
            .start()
            .await
            .unwrap();
        let qa = Predict::<QA>::new(&dspex);
        let mut inputs: Vec<QAInput> = (0..5).map(ask).collect();
        inputs.insert(
            2,
            QAInput {
                question: "<bad>".into(),
            },
        );

        let events = Mutex::new(Vec::new());
        let (bar, term) = in_memory_bar("batch");
        let show = bar.batch();
        let results = qa
            .batch_reporting(inputs.clone(), 2, |p: &BatchProgress| {
                events.lock().unwrap().push(p.clone());
                show(p);
            })
            .await;
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
        let events = events.into_inner().unwrap();
        assert_eq!(
            events.iter().map(|e| e.done).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 6]
        );
        assert!(events.iter().all(|e| e.total == 6));
        assert_eq!(events.last().unwrap().failed, 1);
        assert_eq!(bar.position(), (6, Some(6)));
        bar.finish("done");
        let screen = term.contents();
        assert!(
            screen.contains("batch") && screen.contains("6/6") && screen.contains("done"),
            "{screen}"
        );

        // An evaluation through the same kind of bar.
        let devset: Vec<Example<QAInput, QAOutput>> = inputs
            .iter()
            .enumerate()
            .map(|(i, input)| {
                Example::new(
                    input.clone(),
                    QAOutput {
                        answer: format!("a{i}"),
                    },
                )
            })
            .collect();
        let (bar, term) = in_memory_bar("evaluating");
        let report = Evaluate::new(
            &devset,
            |ex: &Example<QAInput, QAOutput>, out: &QAOutput| ex.output.answer == out.answer,
        )
        .on_progress(bar.evaluation())
        .run(&qa)
        .await
        .unwrap();
        assert_eq!(report.failed, 1);
        assert_eq!(bar.position(), (6, Some(6)));
        assert_eq!(bar.message(), "(1 failed)");
        bar.finish(format!("score {:.2}", report.score));
        assert!(term.contents().contains("score"), "{}", term.contents());
        dspex.shutdown().await.unwrap();
    });
}
