use dspex::prelude::*;

#[dspy_signature]
pub struct QA {
    #[input]
    pub question: String,
    pub context: String,
    #[output]
    pub answer: String,
}

fn main() {}
