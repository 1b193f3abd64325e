use dspex::prelude::*;

#[dspy_signature]
pub struct QA(String, String);

fn main() {}
