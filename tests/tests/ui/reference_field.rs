use dspex::prelude::*;

#[dspy_signature]
pub struct QA {
    #[input]
    pub question: &'static str,
    #[output]
    pub answer: String,
}

fn main() {}
