#![allow(missing_docs)]
//! Token usage beside typed outputs: per call (with history), per `forward`, per batch and per
//! evaluation, in nested scopes. The LM is the rule LM of the optimize example, which reports
//! 10 prompt and 5 completion tokens per request.

mod support;

use dspex::prelude::*;
use dspex::usage::measured;
use dspex::{CallOptions, Usage};
use dspex_tests::rag::{Ex, Rag, Rewrite, RewriteInput, exact, example};
use support::run;
use tokio::sync::OnceCell;

static DSPEX: OnceCell<Dspex> = OnceCell::const_new();

async fn dspex() -> &'static Dspex {
    DSPEX
        .get_or_init(|| async {
            support::example_lm_builder(Lm::custom("dspex_rule_lm.RuleLM", Default::default()), 1)
                .start()
                .await
                .expect("dspex starts")
        })
        .await
}

fn requests(n: u32) -> (u64, u64, u64, u32) {
    (10 * n as u64, 5 * n as u64, 15 * n as u64, n)
}

fn counts(usage: Usage) -> (u64, u64, u64, u32) {
    (
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.total_tokens,
        usage.lm_calls,
    )
}

fn input(i: usize) -> RewriteInput {
    example("q", i, "").input
}

#[test]
fn a_typed_call_gives_its_usage_and_history() {
    run(async {
        let rewrite = Predict::<Rewrite>::new(dspex().await);
        let detailed = rewrite
            .call_detailed(input(3), &CallOptions::default().with_history())
            .await
            .unwrap();
        assert_eq!(detailed.output.query, "find-q3");
        assert_eq!(counts(detailed.usage), requests(1));
        assert_eq!(detailed.history.len(), 1);
        assert_eq!(detailed.history[0].model, "rule");
        assert!(format!("{:?}", detailed.history[0].messages).contains("<q3>"));
        assert_eq!(detailed.usage.cost, 0.0, "the rule LM has no price");
    })
}

#[test]
fn programs_batches_and_evaluations_total_their_usage_in_nested_scopes() {
    run(async {
        let rag = Rag::new(dspex().await);
        let (out, usage) = measured(rag.forward(input(1))).await;
        assert_eq!(out.unwrap().answer, "a1");
        assert_eq!(
            counts(usage),
            requests(2),
            "two predictors, one request each"
        );

        let (outs, usage) = measured(rag.batch((0..5).map(input).collect())).await;
        assert!(outs.iter().all(Result::is_ok));
        assert_eq!(counts(usage), requests(10));

        let ((_, inner), outer) = measured(async {
            let inner = measured(rag.forward(input(2))).await;
            rag.forward(input(3)).await.unwrap();
            inner
        })
        .await;
        assert_eq!(counts(inner), requests(2));
        assert_eq!(
            counts(outer),
            requests(4),
            "the inner scope counts in the outer one"
        );

        let devset: Vec<Ex> = (0..4).map(|i| example("q", i, &format!("a{i}"))).collect();
        let report = Evaluate::new(&devset, exact).run(&rag).await.unwrap();
        assert_eq!(counts(report.usage), requests(8));
        assert!(
            report
                .results
                .iter()
                .all(|r| counts(r.usage) == requests(2))
        );
    })
}
