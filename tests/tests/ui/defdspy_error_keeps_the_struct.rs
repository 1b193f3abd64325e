use dspex::prelude::*;

defdspy! {
    /// One mistake (no Python class) is one error: the struct is still declared, so the code that
    /// names it reports nothing more.
    pub struct Counter<S> {
        fn call(times: i64) -> i64;
    }
}

pub struct Holder<S> {
    pub counter: Option<Counter<S>>,
}

fn main() {}
