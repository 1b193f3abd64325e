use dspex::prelude::*;

#[dspy_signature]
pub struct QA {
    #[input]
    pub question: *const u8,
    #[output]
    pub answer: String,
}

fn main() {}
