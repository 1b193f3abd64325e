//! A two-step program (rewrite the question, then answer with reasoning), control flow in Rust,
//! optimised by DSPy's MIPROv2 with a Rust metric: the score before and after, with a progress
//! bar.
//!
//! `cargo run -p dspex --example optimize` runs offline on a deterministic LM
//! (`examples/python/dspex_rule_lm.py`) that answers right only once its prompt is tuned (a demo,
//! or instructions that ask to answer precisely). With `DSPEX_LM` set (e.g.
//! `openai/gpt-4o-mini`, and the provider's usual key variable) it runs on that model.

use std::time::Instant;

use dspex::prelude::*;
use dspex::progress::ProgressBar;

/// Rewrite the question as a short search query.
#[dspy_signature]
pub struct Rewrite {
    /// The question.
    #[input]
    pub question: String,
    /// The query.
    #[output]
    pub query: String,
}

/// Answer the question, using the query.
#[dspy_signature]
pub struct Answer {
    /// The question.
    #[input]
    pub question: String,
    /// The search query for it.
    #[input]
    pub query: String,
    /// The answer.
    #[output(desc = "a few words")]
    pub answer: String,
}

/// Rewrite, then answer.
#[dspy_module]
pub struct Rag {
    rewrite: Predict<Rewrite>,
    answer: ChainOfThought<Answer>,
}

impl Module for Rag {
    type Input = RewriteInput;
    type Output = AnswerOutput;

    async fn forward(&self, input: RewriteInput) -> dspex::Result<AnswerOutput> {
        let query = self.rewrite.call(input.clone()).await?.query;
        self.answer
            .forward(AnswerInput {
                question: input.question,
                query,
            })
            .await
    }
}

type Ex = Example<RewriteInput, AnswerOutput>;

/// The offline dataset: the rule LM answers `<qN>` with `aN` once tuned.
fn offline_dataset() -> Vec<Ex> {
    (0..16)
        .map(|i| {
            Example::new(
                RewriteInput {
                    question: format!("What is <q{i}>?"),
                },
                AnswerOutput {
                    answer: format!("a{i}"),
                },
            )
        })
        .collect()
}

/// A few questions with short answers, for a real model.
fn real_dataset() -> Vec<Ex> {
    [
        ("What is the capital of France?", "Paris"),
        ("What is the capital of Italy?", "Rome"),
        ("Who wrote Dune?", "Frank Herbert"),
        ("What is 7 times 6?", "42"),
        ("What is the chemical symbol of gold?", "Au"),
        ("In which year did the Berlin Wall fall?", "1989"),
        ("What is the largest planet of the solar system?", "Jupiter"),
        ("Who painted the Mona Lisa?", "Leonardo da Vinci"),
        ("What is the boiling point of water in Celsius?", "100"),
        ("What is the square root of 81?", "9"),
        (
            "Which language has the most native speakers?",
            "Mandarin Chinese",
        ),
        ("What is the smallest prime number?", "2"),
    ]
    .into_iter()
    .map(|(q, a)| {
        Example::new(
            RewriteInput { question: q.into() },
            AnswerOutput { answer: a.into() },
        )
    })
    .collect()
}

fn metric(ex: &Ex, out: &AnswerOutput) -> bool {
    out.answer
        .to_lowercase()
        .contains(&ex.output.answer.to_lowercase())
}

#[tokio::main]
async fn main() -> dspex::Result<()> {
    // The LM from dspex.toml or DSPEX_* variables (see `dspex::config`), else offline.
    let (lm, dataset) = match dspex::Config::load()?.lm() {
        Some(lm) => {
            println!(
                "Using the LM {} (from DSPEX_LM or dspex.toml).",
                lm.model().unwrap_or_default()
            );
            (lm, real_dataset())
        }
        None => {
            println!("DSPEX_LM is not set: running offline on a deterministic LM that answers");
            println!("right only once its prompt is tuned. For a real model, run for example");
            println!(
                "  DSPEX_LM=openai/gpt-4o-mini OPENAI_API_KEY=... cargo run -p dspex --example optimize"
            );
            let mut kwargs = dspex::__private::Map::new();
            kwargs.insert("untuned_answers".into(), "wrong".into());
            (
                Lm::custom("dspex_rule_lm.RuleLM", kwargs),
                offline_dataset(),
            )
        }
    };
    let dspex = Dspex::builder()
        .lm(lm)
        .workers(2)
        .python_path(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python"))
        .start()
        .await?;
    let (trainset, devset) = dspex::data::split(dataset, 0.5, 7);
    let rag = Rag::new(&dspex);

    let before = Evaluate::new(&devset, metric).run(&rag).await?;
    println!(
        "\nBefore: {:.2} on {} dev examples ({} failed)",
        before.score,
        devset.len(),
        before.failed
    );

    // Drawn on a terminal, silent otherwise.
    let bar = ProgressBar::new("compiling");
    let started = Instant::now();
    let compiled = MIPROv2::new(metric)
        .budget(3, 6)
        .max_bootstrapped_demos(2)
        .max_labeled_demos(2)
        .num_threads(4)
        .minibatch(false)
        .on_progress(bar.compilation())
        .compile_with_valset(&rag, &trainset, &devset)
        .await?;
    bar.clear();
    println!("Compiled in {:.1} s", started.elapsed().as_secs_f64());

    let after = Evaluate::new(&devset, metric).run(&compiled).await?;
    println!(
        "After:  {:.2} on {} dev examples ({} failed)\n",
        after.score,
        devset.len(),
        after.failed
    );
    for (name, predictor) in compiled.predictors() {
        let state = predictor.state();
        println!(
            "{name}: {} demos; instructions: {:?}",
            state.demos.len(),
            state.instructions
        );
    }
    let path = std::env::temp_dir().join("dspex-optimize-rag.json");
    compiled.save(&path)?;
    println!("\nSaved to {} (DSPy's format).", path.display());
    dspex.shutdown().await?;
    Ok(())
}
