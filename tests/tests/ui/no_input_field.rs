use dspex::prelude::*;

#[dspy_signature]
pub struct OnlyAnswer {
    #[output]
    pub answer: String,
}

fn main() {}
