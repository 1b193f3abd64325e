//! Three typed DSPy signatures end to end: a question answer, a classification into a Rust enum,
//! and an extraction into a list of nested structs, with ChainOfThought on one of them.
//!
//! `cargo run -p dspex --example quickstart`. With `DSPEX_LM` set (e.g. `openai/gpt-4o-mini`,
//! and the provider's usual key variable such as `OPENAI_API_KEY`) it uses that model; otherwise
//! it runs offline on DSPy's DummyLM. The first run builds the Python environment (about a minute,
//! progress shown).

use std::time::Instant;

use dspex::Value;
use dspex::prelude::*;

/// Answer questions with short factoid answers.
#[dspy_signature]
pub struct QA {
    /// The question to answer.
    #[input]
    pub question: String,
    /// The answer.
    #[output(desc = "often between 1 and 5 words")]
    pub answer: String,
    /// How sure the model is, from 0 to 1.
    #[output]
    pub confidence: f64,
}

/// The sentiment of a text.
#[dspy_type]
pub enum Sentiment {
    /// Favourable.
    Positive,
    /// Unfavourable.
    Negative,
    /// Neither.
    Neutral,
}

/// Classify the sentiment of a product review.
#[dspy_signature]
pub struct Classify {
    /// The review.
    #[input]
    pub review: String,
    /// Its sentiment.
    #[output]
    pub sentiment: Sentiment,
}

/// The kind of an entity.
#[dspy_type]
pub enum Kind {
    /// A human.
    Person,
    /// A location.
    Place,
    /// A company or institution.
    Organisation,
}

/// Something a text mentions.
#[dspy_type]
pub struct Entity {
    /// Its name as written.
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// Other names used for it in the text.
    pub aliases: Vec<String>,
}

/// Extract the named entities a text mentions.
#[dspy_signature]
pub struct Extract {
    /// The text.
    #[input]
    pub text: String,
    /// Every entity, in order of first mention.
    #[output]
    pub entities: Vec<Entity>,
}

fn answer(pairs: &[(&str, &str)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect(),
    )
}

/// DSPy's DummyLM, answering each of the questions below (matched by a substring of the prompt).
fn offline_lm() -> Lm {
    let mut answers = dspex::__private::Map::new();
    answers.insert(
        "capital of France".into(),
        answer(&[
            ("reasoning", "France's seat of government is in Paris."),
            ("answer", "Paris"),
            ("confidence", "0.97"),
        ]),
    );
    answers.insert("battery died".into(), answer(&[("sentiment", "Negative")]));
    answers.insert(
        "Ada Lovelace".into(),
        answer(&[(
            "entities",
            r#"[{"name": "Ada Lovelace", "kind": "Person", "aliases": ["Countess of Lovelace"]},
                {"name": "London", "kind": "Place", "aliases": []},
                {"name": "Analytical Engine", "kind": "Organisation", "aliases": []}]"#,
        )]),
    );
    Lm::dummy(Value::Map(answers))
}

#[tokio::main]
async fn main() -> dspex::Result<()> {
    // The LM (and anything else) from dspex.toml or DSPEX_* variables: see `dspex::config`.
    let config = dspex::Config::load()?;
    let configured = config.apply(Dspex::builder());
    let builder = match config.lm() {
        Some(lm) => {
            println!(
                "Using the LM {} (from DSPEX_LM or dspex.toml).",
                lm.model().unwrap_or_default()
            );
            configured
        }
        None => {
            println!("DSPEX_LM is not set: running offline on DSPy's DummyLM, which answers these");
            println!("three questions from a fixed table. To use a real model, run for example");
            println!(
                "  DSPEX_LM=openai/gpt-4o-mini OPENAI_API_KEY=... cargo run -p dspex --example quickstart"
            );
            configured.lm(offline_lm())
        }
    };

    let started = Instant::now();
    let dspex = builder.workers(2).start().await?;
    println!(
        "\n2 Python DSPy workers ready in {:.2} s\n",
        started.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let qa = QA::chain_of_thought(
        &dspex,
        QAInput {
            question: "What is the capital of France?".into(),
        },
    )
    .await?;
    println!(
        "QA (ChainOfThought), {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    println!("  reasoning:  {}", qa.reasoning);
    println!("  answer:     {:?}", qa.output.answer);
    println!("  confidence: {} (an f64)", qa.output.confidence);

    let t = Instant::now();
    let classified = Classify::predict(
        &dspex,
        ClassifyInput {
            review: "The battery died after two days and support never answered.".into(),
        },
    )
    .await?;
    println!(
        "\nClassify (Predict), {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    println!("  sentiment: Sentiment::{:?}", classified.sentiment);

    let t = Instant::now();
    let extracted = Extract::predict(
        &dspex,
        ExtractInput {
            text: "Ada Lovelace, later Countess of Lovelace, wrote in London about the Analytical Engine.".into(),
        },
    )
    .await?;
    println!(
        "\nExtract (Predict), {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    for entity in &extracted.entities {
        println!(
            "  {:?} {:?} aliases {:?}",
            entity.kind, entity.name, entity.aliases
        );
    }

    dspex.shutdown().await?;
    Ok(())
}
