use dspex::prelude::*;

#[dspy_type]
fn helper() {}

fn main() {}
