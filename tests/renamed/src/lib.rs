//! The dspex macros with the dependency renamed (`my_dspex = { package = "dspex", ... }`): this
//! crate compiles only if generated code finds the runtime under the user's name for it.

use my_dspex::prelude::*;

/// Answer the question.
#[dspy_signature]
pub struct QA {
    /// The question.
    #[input]
    pub question: String,
    /// The answer.
    #[output]
    pub answer: Label,
    /// Where it came from.
    #[output]
    pub source: Source,
}

/// A label.
#[dspy_type]
pub enum Label {
    /// Yes.
    Yes,
    /// No.
    No,
}

/// A source.
#[dspy_type]
pub struct Source {
    /// Its title.
    pub title: String,
}

defdspy! {
    /// `dspy.Predict`, generic over its signature.
    #[python = "dspy.Predict"]
    pub struct GenericPredict<S> {
        /// Runs it.
        fn call(input: S::Input) -> S::Output;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_code_works_under_the_renamed_crate() {
        let spec = <QA as my_dspex::Signature>::spec();
        assert_eq!(spec.name, "QA");
        assert_eq!(spec.outputs.len(), 2);
        let _ = std::any::type_name::<GenericPredict<QA>>();
    }
}
