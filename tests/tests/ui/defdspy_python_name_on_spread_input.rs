use dspex::prelude::*;

defdspy! {
    /// `dspy.Predict`, generic over its signature.
    #[python = "dspy.Predict"]
    pub struct GenericPredict<S> {
        fn call(#[python = "inputs"] input: S::Input) -> S::Output;
    }
}

fn main() {}
