use dspex::prelude::*;

/// Answer.
#[dspy_signature]
pub struct QA {
    #[input]
    pub question: String,
    #[output]
    pub answer: String,
}

// A program that is not a Module has no `forward` to evaluate or optimise.
#[dspy_module]
pub struct Agent {
    answer: Predict<QA>,
}

async fn evaluate(dspex: &Dspex, devset: Vec<Example<QAInput, QAOutput>>) {
    let agent = Agent::new(dspex);
    let metric = |ex: &Example<QAInput, QAOutput>, out: &QAOutput| ex.output == *out;
    let _ = Evaluate::new(&devset, metric).run(&agent).await;
}

fn main() {}
