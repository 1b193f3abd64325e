use dspex::prelude::*;

/// Answer.
#[dspy_signature]
pub struct QA {
    #[input]
    pub question: String,
    #[output]
    pub answer: String,
}

#[dspy_module]
pub struct Agent(Predict<QA>);

fn main() {}
