use dspex::prelude::*;

#[dspy_signature]
pub struct QA {
    #[input]
    pub question: String,
    #[output]
    pub reasoning: String,
    #[output]
    pub answer: String,
}

fn main() {}
