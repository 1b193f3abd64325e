use dspex::prelude::*;

defdspy! {
    pub struct Counter {
        fn call(times: i64) -> i64;
    }
}

fn main() {}
