#![allow(missing_docs)]
//! Every optimiser of the pinned DSPy compiles a Rust program with a Rust metric, and changes its
//! state the way that optimiser does; compilations can be cancelled, and two at once on one
//! worker keep their traces apart. The LM is `dspex_rule_lm.RuleLM` of the optimize example
//! (deterministic, answers any signature by rule).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dspex::DspexBuilder;
use dspex::optimize::{Auto, CompileProgress, ProgressKind};
use dspex::prelude::*;
use dspex_tests::rag::{AnswerOutput, Rag, exact};
use support::{eventually, run};
use tokio::sync::OnceCell;

type Ex = dspex_tests::rag::Ex;

static DSPEX: OnceCell<Dspex> = OnceCell::const_new();
static TUNING: OnceCell<Dspex> = OnceCell::const_new();

fn rule_lm(delay_ms: i64) -> Lm {
    let mut kwargs = dspex::__private::Map::new();
    kwargs.insert("delay_ms".into(), delay_ms.into());
    Lm::custom("dspex_rule_lm.RuleLM", kwargs)
}

/// The rule LM that answers right only once the prompt is tuned (or the question is easy).
fn untuned_lm() -> Lm {
    let mut kwargs = dspex::__private::Map::new();
    kwargs.insert("untuned_answers".into(), "wrong".into());
    Lm::custom("dspex_rule_lm.RuleLM", kwargs)
}

async fn start(workers: usize) -> Dspex {
    start_with(workers, rule_lm(0)).await
}

/// A pool of `workers` on `lm`, with the rule LM's module on the path.
fn builder(workers: usize, lm: Lm) -> DspexBuilder {
    support::example_lm_builder(lm, workers)
}

async fn start_with(workers: usize, lm: Lm) -> Dspex {
    builder(workers, lm).start().await.expect("dspex starts")
}

async fn dspex() -> &'static Dspex {
    DSPEX.get_or_init(|| start(2)).await
}

/// A pool whose LM answers right only once tuned: optimisers have something to improve.
async fn tuning() -> &'static Dspex {
    TUNING.get_or_init(|| start_with(2, untuned_lm())).await
}

fn example(tag: &str, i: usize) -> Ex {
    dspex_tests::rag::example(tag, i, &format!("a{i}"))
}

fn trainset(tag: &str, n: usize) -> Vec<Ex> {
    (0..n).map(|i| example(tag, i)).collect()
}

/// The instructions and demo counts of each predictor.
fn summary(program: &Rag) -> Vec<(String, String, usize)> {
    program
        .predictors()
        .into_iter()
        .map(|(name, p)| (name, p.state().instructions, p.demos().len()))
        .collect()
}

/// Whether an optimiser changed instructions or gave a predictor demos.
fn tuned(before: &Rag, after: &Rag) -> bool {
    instructions_changed(before, after)
        || after
            .predictors()
            .iter()
            .any(|(_, p)| !p.demos().is_empty())
}

fn instructions_changed(before: &Rag, after: &Rag) -> bool {
    summary(before)
        .iter()
        .zip(summary(after))
        .any(|(a, b)| a.1 != b.1)
}

#[test]
fn labeled_few_shot_takes_k_examples_as_demos() {
    run(async {
        let rag = Rag::new(dspex().await);
        let compiled = LabeledFewShot::new()
            .k(3)
            .compile(&rag, &trainset("q", 6))
            .await
            .unwrap();
        for (name, predictor) in compiled.predictors() {
            assert_eq!(predictor.demos().len(), 3, "{name}");
            assert!(predictor.demos().iter().all(|d| d.contains_key("answer")));
        }
    })
}

#[test]
fn random_search_keeps_the_best_bootstrapped_candidate() {
    run(async {
        let rag = Rag::new(tuning().await);
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let metric = move |ex: &Ex, out: &AnswerOutput| {
            counted.fetch_add(1, Ordering::SeqCst);
            exact(ex, out)
        };
        let compiled = BootstrapFewShotWithRandomSearch::new(metric)
            .num_candidate_programs(2)
            .max_bootstrapped_demos(2)
            .max_labeled_demos(1)
            .num_threads(2)
            .compile_with_valset(&rag, &trainset("q", 4), &trainset("v", 3))
            .await
            .unwrap();
        assert!(
            compiled
                .predictors()
                .iter()
                .any(|(_, p)| !p.demos().is_empty()),
            "{:?}",
            summary(&compiled)
        );
        // Candidates were scored on the valset (3 examples each) and bootstrapped on the trainset.
        assert!(calls.load(Ordering::SeqCst) > 6);
    })
}

#[test]
fn copro_rewrites_instructions_with_its_prompt_model() {
    run(async {
        let rag = Rag::new(dspex().await);
        let compiled = COPRO::new(exact)
            .breadth(2)
            .depth(1)
            .prompt_model(rule_lm(0))
            .compile(&rag, &trainset("q", 3))
            .await
            .unwrap();
        assert!(
            instructions_changed(&rag, &compiled),
            "{:?}",
            summary(&compiled)
        );
        let instructions = compiled.predictors()[0].1.state().instructions;
        assert!(
            instructions.starts_with("Answer precisely"),
            "{instructions}"
        );
    })
}

#[test]
fn miprov2_searches_instructions_and_demos() {
    run(async {
        let rag = Rag::new(tuning().await);
        let trials = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = trials.clone();
        let compiled = MIPROv2::new(exact)
            .on_progress(move |p: &CompileProgress| {
                if p.kind == ProgressKind::Trial {
                    seen.lock()
                        .unwrap()
                        .push((p.trials, p.trial_score, p.best_trial_score));
                }
            })
            .budget(2, 3)
            .max_bootstrapped_demos(1)
            .max_labeled_demos(1)
            .num_threads(2)
            .minibatch(false)
            .compile_with_valset(&rag, &trainset("q", 4), &trainset("v", 3))
            .await
            .unwrap();
        assert!(tuned(&rag, &compiled), "{:?}", summary(&compiled));
        // Each trial was reported, numbered, with its score and the best so far.
        let trials = trials.lock().unwrap();
        assert!(trials.len() >= 3, "{trials:?}");
        // (Events come from concurrent tasks: numbered in order, reported in about that order.)
        let mut numbers: Vec<usize> = trials.iter().map(|t| t.0).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=trials.len()).collect::<Vec<_>>());
        let last = trials.last().unwrap();
        assert!(last.1.is_some() && last.2 >= last.1, "{trials:?}");
        assert_eq!(
            last.2,
            Some(1.0),
            "a tuned candidate answers every example: {trials:?}"
        );
    })
}

#[test]
fn gepa_evolves_instructions_with_a_reflection_lm() {
    run(async {
        let rag = Rag::new(tuning().await);
        // A metric that is never perfect, so that GEPA reflects.
        let half = |ex: &Ex, out: &AnswerOutput| if exact(ex, out) { 0.5 } else { 0.0 };
        let compiled = GEPA::new(half, rule_lm(0))
            .max_metric_calls(30)
            .reflection_minibatch_size(2)
            .num_threads(1)
            .compile_with_valset(&rag, &trainset("q", 3), &trainset("v", 2))
            .await
            .unwrap();
        assert!(
            instructions_changed(&rag, &compiled),
            "{:?}",
            summary(&compiled)
        );
    })
}

#[test]
fn simba_adds_demos_or_rules() {
    run(async {
        let rag = Rag::new(tuning().await);
        // Easy questions are answered right untuned, the others not: SIMBA sees what works.
        let trainset: Vec<Ex> = (0..4)
            .map(|i| {
                let mut ex = example("q", i);
                if i % 2 == 0 {
                    ex.input.question.push_str(" (easy)");
                }
                ex
            })
            .collect();
        let compiled = SIMBA::new(exact)
            .bsize(4)
            .num_candidates(2)
            .max_steps(1)
            .max_demos(1)
            .num_threads(1)
            .compile(&rag, &trainset)
            .await
            .unwrap();
        assert!(tuned(&rag, &compiled), "{:?}", summary(&compiled));
    })
}

#[test]
fn dropping_a_compilation_stops_it_and_the_pool_keeps_serving() {
    run(async {
        // One worker: the compilation and the next call share it.
        let dspex = builder(1, rule_lm(0))
            .python_path(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python"))
            .import("dspex_test_rag")
            .start()
            .await
            .expect("dspex starts");
        let runs = || async {
            match dspex
                .bridge()
                .call_tool("optimiser_runs", Default::default())
                .await
            {
                Ok(dspex::Value::Int(n)) => n,
                other => panic!("{other:?}"),
            }
        };
        let rag = Rag::new(&dspex);
        let scored = Arc::new(AtomicUsize::new(0));
        let seen = scored.clone();
        // A slow teacher LM: each example takes a while.
        let optimizer = BootstrapFewShot::new(exact)
            .max_bootstrapped_demos(40)
            .teacher_lm(rule_lm(50))
            .on_progress(move |_: &CompileProgress| {
                seen.fetch_add(1, Ordering::SeqCst);
            });
        let trainset = trainset("q", 40);
        let compile = {
            let rag = rag.clone();
            tokio::spawn(async move { optimizer.compile(&rag, &trainset).await })
        };
        assert!(
            eventually(Duration::from_secs(60), || scored.load(Ordering::SeqCst)
                >= 1)
            .await,
            "the compilation started"
        );
        assert_eq!(runs().await, 1, "the run is in the worker");
        // The worker serves other calls while the optimiser runs.
        let out = rag.forward(example("q", 3).input).await.unwrap();
        assert_eq!(out.answer, "a3");
        assert!(!compile.is_finished());
        compile.abort();
        assert!(compile.await.unwrap_err().is_cancelled());
        let pool = dspex.bridge().pool();
        assert!(
            eventually(Duration::from_secs(30), || pool.stats().in_flight == 0).await,
            "no worker stays busy: {:?}",
            pool.stats()
        );
        // The optimiser stops in the worker: its run is gone.
        let mut gone = false;
        for _ in 0..300 {
            if runs().await == 0 {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone, "the optimiser's run ended in the worker");
        assert!(
            scored.load(Ordering::SeqCst) < 40,
            "it did not run to its end"
        );
        // The next call works, on the same worker.
        let out = rag.forward(example("q", 7).input).await.unwrap();
        assert_eq!(out.answer, "a7");
        dspex.shutdown().await.unwrap();
    })
}

#[test]
fn a_compilation_is_not_cut_by_the_pool_s_request_timeout() {
    run(async {
        let dspex = builder(1, rule_lm(0))
            .bridge(|b| b.pool(|p| p.request_timeout(Some(Duration::from_millis(300)))))
            .start()
            .await
            .expect("dspex starts");
        let rag = Rag::new(&dspex);
        // 8 examples x 2 steps x 50 ms: over a second, in calls of 50 ms each.
        let started = std::time::Instant::now();
        let compiled = BootstrapFewShot::new(exact)
            .max_bootstrapped_demos(8)
            .max_labeled_demos(0)
            .teacher_lm(rule_lm(50))
            .compile(&rag, &trainset("q", 8))
            .await
            .unwrap();
        assert!(started.elapsed() > Duration::from_millis(600));
        assert_eq!(compiled.predictors()[0].1.demos().len(), 8);
        dspex.shutdown().await.unwrap();
    })
}

#[test]
fn two_compilations_on_one_worker_keep_their_traces_apart() {
    run(async {
        let one_worker = start(1).await;
        let (a, b) = (Rag::new(&one_worker), Rag::new(&one_worker));
        let (train_a, train_b) = (trainset("q", 6), trainset("r", 6));
        let optimizer = BootstrapFewShot::new(exact)
            .max_bootstrapped_demos(4)
            .max_labeled_demos(0)
            .teacher_lm(rule_lm(5));
        let (a, b) = tokio::join!(
            optimizer.compile(&a, &train_a),
            optimizer.compile(&b, &train_b)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        for (program, tag, other) in [(&a, "<q", "<r"), (&b, "<r", "<q")] {
            for (name, predictor) in program.predictors() {
                assert_eq!(predictor.demos().len(), 4, "{name}");
                for demo in predictor.demos() {
                    let question = demo["question"].as_str().unwrap();
                    assert!(
                        question.starts_with(tag) && !question.starts_with(other),
                        "{name}: {question}"
                    );
                }
            }
        }
        one_worker.shutdown().await.unwrap();
    })
}

#[test]
fn auto_presets_are_accepted() {
    // Builders only: the preset becomes DSPy's string.
    let optimizer = MIPROv2::new(exact).auto(Auto::Light);
    assert!(format!("{optimizer:?}").contains("light"));
}
