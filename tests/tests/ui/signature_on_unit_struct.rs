use dspex::prelude::*;

#[dspy_signature]
pub struct Nothing;

fn main() {}
