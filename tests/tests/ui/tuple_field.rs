use dspex::prelude::*;

#[dspy_signature]
pub struct QA {
    #[input]
    pub question: String,
    #[output]
    pub answer: (String, f64),
}

fn main() {}
