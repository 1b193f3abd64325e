use dspex::prelude::*;

#[dspy_signature(name = "QuestionAnswer")]
pub struct QA {
    #[input]
    pub question: String,
    #[output]
    pub answer: String,
}

fn main() {}
