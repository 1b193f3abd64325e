use dspex::prelude::*;

defdspy! {
    #[python = "Counter"]
    pub struct Counter {
        fn value() -> i64;
    }
}

fn main() {}
