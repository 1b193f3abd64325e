//! The two-step program the program and optimiser tests share: rewrite a question `<tagN>` into a
//! query, then answer it with reasoning. The test LMs answer `<tagN>` with `find-tagN`, and that
//! query with `aN`. Its fields have no descriptions, like its Python twin's
//! (`tests/tests/python/dspex_test_rag.py`), so that saved states compare equal.
#![allow(missing_docs)]

use dspex::prelude::*;

/// Rewrite the question as a search query.
#[dspy_signature]
pub struct Rewrite {
    #[input]
    pub question: String,
    #[output]
    pub query: String,
}

/// Answer the question using the query.
#[dspy_signature]
pub struct Answer {
    #[input]
    pub question: String,
    #[input]
    pub query: String,
    #[output]
    pub answer: String,
}

/// Rewrite, then answer: control flow in Rust.
#[dspy_module]
pub struct Rag {
    rewrite: Predict<Rewrite>,
    answer: ChainOfThought<Answer>,
}

impl Module for Rag {
    type Input = RewriteInput;
    type Output = AnswerOutput;

    async fn forward(&self, input: RewriteInput) -> dspex::Result<AnswerOutput> {
        let query = self.rewrite.call(input.clone()).await?.query;
        self.answer
            .forward(AnswerInput {
                question: input.question,
                query,
            })
            .await
    }
}

/// An example of [`Rag`].
pub type Ex = Example<RewriteInput, AnswerOutput>;

/// The example asking `<{tag}{i}>`, expecting `answer`.
pub fn example(tag: &str, i: usize, answer: &str) -> Ex {
    Example::new(
        RewriteInput {
            question: format!("<{tag}{i}>"),
        },
        AnswerOutput {
            answer: answer.to_owned(),
        },
    )
}

/// The metric: the expected answer, exactly.
pub fn exact(ex: &Ex, out: &AnswerOutput) -> bool {
    ex.output.answer == out.answer
}
