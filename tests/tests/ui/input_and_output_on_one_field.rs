use dspex::prelude::*;

#[dspy_signature]
pub struct QA {
    #[input]
    #[output]
    pub question: String,
    #[output]
    pub answer: String,
}

fn main() {}
