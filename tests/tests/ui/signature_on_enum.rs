use dspex::prelude::*;

#[dspy_signature]
pub enum Sentiment {
    Positive,
    Negative,
}

fn main() {}
