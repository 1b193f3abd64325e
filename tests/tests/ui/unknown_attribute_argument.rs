use dspex::prelude::*;

#[dspy_signature]
pub struct QA {
    #[input(description = "the question")]
    pub question: String,
    #[output]
    pub answer: String,
}

fn main() {}
