use dspex::prelude::*;

defdspy! {
    /// A Python counter.
    #[python = "my_module.Counter"]
    pub struct Counter {
        fn new(#[python = "max-iters"] max_iters: i64);
    }
}

fn main() {}
