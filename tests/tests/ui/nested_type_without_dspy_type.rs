use dspex::prelude::*;

pub struct Address {
    pub city: String,
}

#[dspy_type]
pub struct Person {
    pub name: String,
    pub address: Address,
}

fn main() {}
