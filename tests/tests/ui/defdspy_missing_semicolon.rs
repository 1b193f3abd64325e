use dspex::prelude::*;

defdspy! {
    #[python = "my_module.Counter"]
    pub struct Counter {
        fn call(times: i64) -> i64
        fn value() -> i64;
    }
}

fn main() {}
