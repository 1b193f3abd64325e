use dspex::prelude::*;

/// Only inputs: nothing for the LM to produce.
#[dspy_signature]
pub struct OnlyQuestion {
    #[input]
    pub question: String,
}

fn main() {}
