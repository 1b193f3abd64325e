use dspex::prelude::*;

#[dspy_signature]
pub struct Classify {
    #[input]
    pub text: String,
    #[output]
    pub r#class: String,
}

fn main() {}
