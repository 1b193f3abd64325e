use dspex::prelude::*;

#[dspy_type]
pub struct Pair(String, String);

fn main() {}
