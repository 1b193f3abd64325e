use dspex::prelude::*;

#[dspy_module]
pub struct Agent<S: Signature> {
    answer: Predict<S>,
}

fn main() {}
