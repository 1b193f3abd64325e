use dspex::prelude::*;

defdspy! {
    #[python = "my_module.Counter"]
    pub struct Counter {
        fn new(start: i64) -> Counter;
    }
}

fn main() {}
