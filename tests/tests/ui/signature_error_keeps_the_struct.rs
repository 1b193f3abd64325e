use dspex::prelude::*;

/// One mistake (no output field) is one error: the struct itself is still emitted, so the code
/// that uses it reports nothing more.
#[dspy_signature]
pub struct Ask {
    #[input]
    pub question: String,
}

pub fn question_of(ask: &Ask) -> &str {
    &ask.question
}

fn main() {}
