use dspex::prelude::*;

#[dspy_signature]
pub struct QA {
    #[input]
    #[input(desc = "the question")]
    pub question: String,
    #[output]
    pub answer: String,
}

fn main() {}
