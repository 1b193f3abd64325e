//! The bridge's error type.

use std::fmt;

use snakepit::{PoolError, WorkerId};

use crate::environment::EnvironmentError;

/// An exception raised by Python code in a worker, as it happened there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonError {
    /// The exception's class name, e.g. `ValueError`.
    pub exception_type: String,
    /// The exception's message.
    pub message: String,
    /// The formatted Python traceback.
    pub traceback: String,
}

impl fmt::Display for PythonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.exception_type, self.message)
    }
}

impl std::error::Error for PythonError {}

/// Everything that can go wrong on the bridge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The pool could not run the request (queue full, timeout, worker crashed, ...).
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The Python environment could not be found or provisioned.
    #[error(transparent)]
    Environment(#[from] EnvironmentError),
    /// Python code raised an exception.
    #[error("Python raised {0}")]
    Python(PythonError),
    /// The session does not exist on its worker (cleaned up or expired).
    #[error("{message}")]
    SessionNotFound {
        /// The worker's message.
        message: String,
    },
    /// No tool, variable or object has that name.
    #[error("{message}")]
    NotFound {
        /// The worker's message.
        message: String,
    },
    /// The request was malformed: wrong argument names or types, a bad value.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// The worker's message.
        message: String,
    },
    /// A variable value broke its type or constraints.
    #[error("constraint violation: {message}")]
    ConstraintViolation {
        /// The worker's message.
        message: String,
    },
    /// Something already exists under that name.
    #[error("{message}")]
    AlreadyExists {
        /// The worker's message.
        message: String,
    },
    /// A Rust tool called from Python failed, or the callback channel is gone.
    #[error("callback failed: {message}")]
    CallbackFailed {
        /// What went wrong.
        message: String,
    },
    /// The LM answered something that does not fit the signature.
    #[error("{message}; the LM answered:\n{raw_output}")]
    ParseFailed {
        /// The output field that did not parse (empty when unknown).
        field: String,
        /// The LM's raw completion.
        raw_output: String,
        /// What went wrong.
        message: String,
    },
    /// The call's result is larger than a message may be
    /// ([`BridgeBuilder::max_message_bytes`](crate::BridgeBuilder::max_message_bytes)); the worker
    /// stays healthy.
    #[error("{message}")]
    ResultTooLarge {
        /// The worker's message, with the sizes.
        message: String,
    },
    /// A value cannot cross the wire (or came back malformed).
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// The gRPC call failed while the worker stayed alive.
    #[error("gRPC call to {worker} failed")]
    Transport {
        /// The worker called.
        worker: WorkerId,
        /// What gRPC reported (its own source is the transport's error, when there is one).
        #[source]
        status: Box<tonic::Status>,
    },
    /// The call's own deadline ([`CallOptions::timeout`](crate::api::dspy::CallOptions::timeout))
    /// passed before it finished; it was cancelled in its worker.
    #[error("the call's deadline of {after:?} passed")]
    DeadlineExceeded {
        /// The deadline the call was given.
        after: std::time::Duration,
    },
    /// The worker answered something the protocol does not allow.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Workers cannot be placed on the Ray cluster: a bad placement, or the pool's Ray driver
    /// could not connect to the cluster.
    #[error("cannot place workers on the Ray cluster at {address}: {message}")]
    Ray {
        /// The cluster's address, as given.
        address: String,
        /// What went wrong (the driver's own words, when it said any).
        message: String,
    },
}

impl BridgeError {
    /// A short, stable name of the error's kind, as in metrics and spans: the pool's
    /// ([`PoolError::kind`]) for pool errors, else `environment`, `python`, `session_not_found`,
    /// `not_found`, `invalid_argument`, `constraint_violation`, `already_exists`,
    /// `callback_failed`, `parse_failed`, `result_too_large`, `invalid_value`, `transport`,
    /// `deadline_exceeded`, `protocol`, `ray`.
    ///
    /// ```
    /// # use snakepit_grpc_bridge::BridgeError;
    /// let e = BridgeError::DeadlineExceeded { after: std::time::Duration::from_secs(1) };
    /// assert_eq!(e.kind(), "deadline_exceeded");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            BridgeError::Pool(e) => e.kind(),
            BridgeError::Environment(_) => "environment",
            BridgeError::Python(_) => "python",
            BridgeError::SessionNotFound { .. } => "session_not_found",
            BridgeError::NotFound { .. } => "not_found",
            BridgeError::InvalidArgument { .. } => "invalid_argument",
            BridgeError::ConstraintViolation { .. } => "constraint_violation",
            BridgeError::AlreadyExists { .. } => "already_exists",
            BridgeError::CallbackFailed { .. } => "callback_failed",
            BridgeError::ParseFailed { .. } => "parse_failed",
            BridgeError::ResultTooLarge { .. } => "result_too_large",
            BridgeError::InvalidValue(_) => "invalid_value",
            BridgeError::Transport { .. } => "transport",
            BridgeError::DeadlineExceeded { .. } => "deadline_exceeded",
            BridgeError::Protocol(_) => "protocol",
            BridgeError::Ray { .. } => "ray",
        }
    }

    /// The Python exception, if this error is one.
    pub fn python(&self) -> Option<&PythonError> {
        match self {
            BridgeError::Python(e) => Some(e),
            _ => None,
        }
    }
}

/// The bridge's `Result`.
pub type Result<T, E = BridgeError> = std::result::Result<T, E>;
