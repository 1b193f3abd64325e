//! The consumer layer's error type.

use snakepit_grpc_bridge::BridgeError;

/// An output the LM produced that does not decode into the Rust type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: expected {expected}, got {found}")]
pub struct DecodeError {
    /// Where in the output, e.g. `entities[0].kind`.
    pub path: String,
    /// What the Rust type needs.
    pub expected: String,
    /// What came back.
    pub found: String,
}

impl DecodeError {
    /// An error at the top level.
    pub fn new(expected: impl Into<String>, found: impl Into<String>) -> Self {
        DecodeError {
            path: String::new(),
            expected: expected.into(),
            found: found.into(),
        }
    }

    /// The same error, inside field `name`.
    pub fn in_field(mut self, name: &str) -> Self {
        self.path = if self.path.is_empty() {
            name.to_owned()
        } else if self.path.starts_with('[') {
            format!("{name}{}", self.path)
        } else {
            format!("{name}.{}", self.path)
        };
        self
    }

    /// The same error, inside item `index` of a list.
    pub fn in_item(mut self, index: usize) -> Self {
        self.path = if self.path.is_empty() || self.path.starts_with('[') {
            format!("[{index}]{}", self.path)
        } else {
            format!("[{index}].{}", self.path)
        };
        self
    }
}

/// Everything that can go wrong in dspex.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bridge failed: pool, Python environment, worker, or DSPy (including
    /// [`BridgeError::ParseFailed`] when the LM's answer does not fit the signature).
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    /// DSPy's output does not decode into the signature's Rust types.
    #[error("the output of `{signature}` does not fit its Rust type")]
    Decode {
        /// The signature or object concerned.
        signature: String,
        /// What did not fit.
        #[source]
        source: DecodeError,
    },
    /// A dataset could not be read (see [`crate::data`]).
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// The configuration (`dspex.toml`, `DSPEX_*`) could not be read.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A saved program could not be read or written, or does not fit the program.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The metric failed on an example: it returned an error or a number that is not finite,
    /// or it panicked.
    #[error("the metric failed on {example}: {message}")]
    Metric {
        /// Which example (`example #3`).
        example: String,
        /// What went wrong.
        message: String,
    },
    /// An optimiser could not compile the program.
    #[error("{optimizer} could not compile the program: {message}")]
    Compile {
        /// The optimiser.
        optimizer: String,
        /// Why.
        message: String,
    },
}

/// An error and each of its causes, one after another (`error: cause: cause`): how to print an
/// error whole, since each error's message leaves its cause to [`source`](std::error::Error::source).
///
/// ```
/// let io = std::io::Error::other("disk full");
/// let error = dspex::data::DataError::Read { path: "d.jsonl".into(), source: io };
/// assert_eq!(dspex::error_chain(&error), "cannot read d.jsonl: disk full");
/// ```
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// dspex's `Result`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
