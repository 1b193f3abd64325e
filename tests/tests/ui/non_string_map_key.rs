use std::collections::HashMap;

use dspex::prelude::*;

#[dspy_signature]
pub struct Scores {
    #[input]
    pub text: String,
    #[output]
    pub by_id: HashMap<u32, f64>,
}

fn main() {}
