use dspex::prelude::*;

defdspy! {
    #[python = "my_module.Counter"]
    pub struct Counter {
        fn value(self) -> i64;
    }
}

fn main() {}
