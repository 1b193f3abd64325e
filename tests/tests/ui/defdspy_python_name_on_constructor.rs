use dspex::prelude::*;

defdspy! {
    /// Compare several attempts.
    #[python = "dspy.MultiChainComparison"]
    pub struct MultiChainComparison<S> {
        #[python = "M"]
        fn new(m: i64);
        fn call(input: S::Input) -> S::Output;
    }
}

fn main() {}
