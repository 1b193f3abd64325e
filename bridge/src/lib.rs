//! # snakepit-grpc-bridge
//!
//! The platform layer of dspex: runs Python workers under [`snakepit`] and speaks to them over
//! gRPC. It owns the wire contract (`proto/`), the Python worker package (`python/`, embedded in
//! this crate and materialised at start-up) and the Python environment, which it provisions by
//! itself: a managed virtual environment with pinned packages, created on first use.
//!
//! - [`Bridge`]: start a pool of Python workers ([`Bridge::builder`]).
//! - [`api::sessions`]: state kept in one worker.
//! - [`api::tools`]: call Python tools (plain or streaming); register Rust tools Python calls back.
//! - [`api::variables`]: typed variables with constraints, and watches.
//! - [`api::dspy`]: DSPy signatures, LMs, modules and typed predictions.
//! - [`Value`]: what crosses the wire, typed (no JSON in strings).
//!
//! ```no_run
//! # async fn demo() -> Result<(), snakepit_grpc_bridge::BridgeError> {
//! use snakepit_grpc_bridge::{Bridge, Value, args};
//! use snakepit_grpc_bridge::api::variables::{Constraints, VariableType};
//!
//! let bridge = Bridge::builder().workers(2).start().await?;
//! let session = bridge.create_session().await?;
//! session.register_rust_tool("double", "Doubles x.", |a| async move {
//!     Ok(Value::from(a["x"].as_i64().unwrap_or_default() * 2))
//! }).await?;
//! session.register_variable("temperature", VariableType::Float, 0.7, Constraints::default().min(0.0).max(2.0)).await?;
//! let echoed = session.call_tool("snakepit.echo", args([("value", "hi")])).await?;
//! assert_eq!(echoed, Value::from("hi"));
//! bridge.shutdown().await?;
//! # Ok(()) }
//! ```

mod adapter;
pub mod api;
mod bridge;
mod convert;
mod embedded;
pub mod environment;
mod error;
mod fast;
mod fork_server;
mod framing;
mod installer;
mod lm;
mod provisioning;
mod ray;
pub mod telemetry;
mod transport;
mod value;
mod workdir;

#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
mod proto {
    tonic::include_proto!("snakepit.bridge.v1");
}

pub use adapter::{GrpcPythonAdapter, Transport, WorkerConnection};
pub use bridge::{Bridge, BridgeBuilder, WorkerIdentity};
pub use error::{BridgeError, PythonError, Result};
pub use provisioning::{ProvisionProgress, ProvisionReporter};
pub use ray::{RAY_ADDRESS_ENV, RayPlacement, TlsIdentity};
pub use snakepit;
pub use snakepit::{
    CircuitBreakerConfig, CircuitState, PoolError, RecycleReason, RetryPolicy, WorkerExit,
};
pub use value::{DType, Map, ObjectRef, Tensor, Value, args};
