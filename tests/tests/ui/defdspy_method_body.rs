use dspex::prelude::*;

defdspy! {
    #[python = "my_module.Counter"]
    pub struct Counter {
        fn value() -> i64 { 0 }
    }
}

fn main() {}
