//! The whole surface of dspex compiles.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use dspex::prelude::*;

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
    pub name: String,
    pub kind: Label,
    pub aliases: Vec<String>,
}

#[dspy_type]
pub struct Nested {
    pub entities: Vec<Entity>,
    pub by_name: HashMap<String, Entity>,
    pub sorted: BTreeMap<String, Option<Vec<Label>>>,
}

/// Classify a text and extract what it mentions.
#[dspy_signature]
struct Analyse {
    #[input(desc = "the text", prefix = "Text:")]
    text: String,
    #[input]
    r#type: Option<String>,
    #[output]
    label: Label,
    #[output]
    entities: Vec<Entity>,
    #[output]
    nested: Option<Nested>,
    #[output]
    small: u8,
    #[output]
    counts: HashMap<String, i32>,
}

defdspy! {
    /// A Python counter.
    #[python = "my_module.Counter"]
    pub struct Counter {
        fn new(start: i64, step: i64);
        fn call(times: i64) -> i64;
        #[python = "read"]
        fn value() -> i64;
        fn reset();
    }
}

defdspy! {
    /// Compare several attempts.
    #[python = "dspy.MultiChainComparison"]
    pub struct MultiChainComparison<S> {
        fn new(#[python = "M"] m: i64);
        fn call(completions: Vec<HashMap<String, String>>, input: S::Input) -> S::Output;
    }
}

async fn uses() -> dspex::Result<()> {
    let dspex = Dspex::builder()
        .lm(Lm::dummy(serde_json::json!([{"answer": "Paris", "confidence": "0.9"}])))
        .workers(2)
        .start()
        .await?;
    let out: QAOutput = QA::predict(&dspex, QAInput { question: "q".into() }).await?;
    let r: Reasoned<QAOutput> = QA::chain_of_thought(&dspex, QAInput { question: "q".into() }).await?;
    let qa = Predict::<QA>::new(&dspex);
    let _ = qa.call(QAInput { question: "q".into() }).await?;
    let cot = ChainOfThought::<Analyse>::new(&dspex);
    let _ = cot.call(AnalyseInput { text: "t".into(), r#type: None }).await?;
    let counter = Counter::create(&dspex, 1, 2).await?;
    let _: i64 = counter.execute(3).await?;
    let mcc = MultiChainComparison::<QA>::create(&dspex, 3).await?;
    let _: QAOutput = mcc.call(vec![], QAInput { question: "q".into() }).await?;
    let handle: Dspex = dspex.clone();
    fn assert_send_sync<T: Send + Sync + Clone>(_: &T) {}
    assert_send_sync(&handle);
    dspex.shutdown().await?;
    let _ = (out, r);
    Ok(())
}

fn main() {}
