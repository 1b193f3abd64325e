use dspex::prelude::*;

/// One mistake (a tuple struct) is one error: the type itself is still emitted, so the code that
/// uses it reports nothing more.
#[dspy_type]
pub struct Pair(pub String, pub String);

pub fn first(pair: &Pair) -> &str {
    &pair.0
}

fn main() {}
