use dspex::prelude::*;

defdspy! {
    #[python = "my_module.Counter"]
    pub struct Counter {
        fn add(amount: u128) -> i64;
    }
}

fn main() {}
