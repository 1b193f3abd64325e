//! How a Rust tool fails, as Python code calling it sees it.

use std::error::Error as StdError;

/// A Rust tool's failure. Python code calling the tool gets an `InvalidArgument` for
/// [`ToolError::InvalidArguments`] and a `RemoteToolError` (a `CallbackFailed`) otherwise, with
/// the message and each of its causes; the error reaches a Rust caller of that Python code as
/// [`BridgeError::InvalidArgument`](crate::BridgeError::InvalidArgument) or
/// [`BridgeError::CallbackFailed`](crate::BridgeError::CallbackFailed).
///
/// Tools may return any error that converts into it: a `String` or `&str` (a failure), or
/// another error through [`ToolError::failed`].
///
/// ```
/// use snakepit_grpc_bridge::api::tools::ToolError;
/// let e = ToolError::failed(std::io::Error::other("disk full"));
/// assert_eq!(e.to_string(), "disk full");
/// let e: ToolError = "no such city".into();
/// assert!(matches!(e, ToolError::Failed { .. }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The arguments do not fit the tool.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The tool ran and failed.
    #[error("{message}")]
    Failed {
        /// What went wrong.
        message: String,
        /// Why, when another error is the cause.
        #[source]
        source: Option<Box<dyn StdError + Send + Sync>>,
    },
}

impl ToolError {
    /// The arguments do not fit the tool.
    pub fn invalid_arguments(message: impl Into<String>) -> Self {
        ToolError::InvalidArguments(message.into())
    }

    /// The tool failed because of `error` (its message, with `error` as the source).
    pub fn failed(error: impl StdError + Send + Sync + 'static) -> Self {
        ToolError::Failed {
            message: error.to_string(),
            source: error.source().map(|s| s.to_string().into()),
        }
    }

    /// The message and each cause, as Python code sees it.
    pub(crate) fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut cause = self.source();
        while let Some(e) = cause {
            text.push_str(": ");
            text.push_str(&e.to_string());
            cause = e.source();
        }
        text
    }

    /// The error as the worker receives it.
    pub(crate) fn to_proto(&self) -> crate::proto::ErrorInfo {
        let kind = match self {
            ToolError::InvalidArguments(_) => crate::proto::ErrorKind::InvalidArgument,
            ToolError::Failed { .. } => crate::proto::ErrorKind::CallbackFailed,
        };
        crate::proto::ErrorInfo {
            kind: kind as i32,
            r#type: "RustToolError".into(),
            message: self.chain(),
            ..Default::default()
        }
    }
}

impl From<String> for ToolError {
    fn from(message: String) -> Self {
        ToolError::Failed {
            message,
            source: None,
        }
    }
}

impl From<&str> for ToolError {
    fn from(message: &str) -> Self {
        message.to_owned().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_sees_the_message_and_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot read the index")]
        struct Outer(#[source] std::io::Error);
        let e = ToolError::failed(Outer(std::io::Error::other("disk full")));
        assert_eq!(e.chain(), "cannot read the index: disk full");
        let info = ToolError::invalid_arguments("city is empty").to_proto();
        assert_eq!(info.kind, crate::proto::ErrorKind::InvalidArgument as i32);
        assert_eq!(info.message, "invalid arguments: city is empty");
    }
}
