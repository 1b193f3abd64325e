use dspex::prelude::*;

defdspy! {
    #[python = "my_module.Counter"]
    pub struct Counter {
        fn create(start: i64);
    }
}

fn main() {}
