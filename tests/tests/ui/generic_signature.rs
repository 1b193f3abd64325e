use dspex::prelude::*;

#[dspy_signature]
pub struct Echo<T> {
    #[input]
    pub value: T,
    #[output]
    pub echoed: T,
}

fn main() {}
