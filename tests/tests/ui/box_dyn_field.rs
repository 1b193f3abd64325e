use dspex::prelude::*;

#[dspy_signature]
pub struct QA {
    #[input]
    pub question: String,
    #[output]
    pub answer: Box<dyn std::fmt::Display>,
}

fn main() {}
