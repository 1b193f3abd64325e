use dspex::prelude::*;

#[dspy_signature]
pub struct QA {
    #[input]
    pub question: String,
    #[output(desc = "short", desc = "very short")]
    pub answer: String,
}

fn main() {}
