//! [`Example`]: one labelled example, for evaluating and optimising programs.

use serde::{Deserialize, Serialize};

/// One labelled example: an input of a signature (or program) and the output expected for it.
///
/// Datasets load from files with [`crate::data`]. In a file, an example is one flat record holding
/// both the input and the output fields, as in DSPy: `{"question": "…", "answer": "…"}`.
///
/// ```
/// use dspex::prelude::*;
///
/// /// Answer the question.
/// #[dspy_signature]
/// pub struct QA {
///     #[input]
///     pub question: String,
///     #[output]
///     pub answer: String,
/// }
///
/// let example = Example::new(
///     QAInput { question: "2 + 2?".into() },
///     QAOutput { answer: "4".into() },
/// );
/// assert_eq!(example.output.answer, "4");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example<I, O> {
    /// What the program is given.
    pub input: I,
    /// What it should answer.
    pub output: O,
}

impl<I, O> Example<I, O> {
    /// An example of `input` and its expected `output`.
    pub fn new(input: I, output: O) -> Self {
        Example { input, output }
    }
}
