use dspex::prelude::*;

#[dspy_signature]
pub struct Count {
    #[input]
    pub text: String,
    #[output]
    pub words: u64,
}

fn main() {}
