use dspex::prelude::*;

#[dspy_type]
pub struct Node {
    pub name: String,
    pub children: Vec<Node>,
}

fn main() {}
