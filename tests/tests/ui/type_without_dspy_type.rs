use dspex::prelude::*;

pub struct Person {
    pub name: String,
}

#[dspy_signature]
pub struct Extract {
    #[input]
    pub text: String,
    #[output]
    pub people: Vec<Person>,
}

fn main() {}
