//! What `defdspy!` wrappers stand on: a Python object in its own session, and typed calls.

use snakepit_grpc_bridge::Map;
use snakepit_grpc_bridge::api::dspy::{Instance, SignatureSpec};
use snakepit_grpc_bridge::api::sessions::Session;

use crate::dspex::Dspex;
use crate::error::{Error, Result};
use crate::signature::{Signature, SignatureOutput};
use crate::types::DspyType;

/// A Python object created by class path in a session of its own.
#[derive(Debug)]
pub struct ObjectModule {
    // Declared first: the instance goes before its session.
    instance: Instance,
    session: Session,
}

impl ObjectModule {
    /// The instance, for generic calls.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// The session the object lives in.
    pub fn session(&self) -> &Session {
        &self.session
    }
}

/// Creates `class_path(signature?, **kwargs)` in a new session.
pub async fn create_object(
    dspex: &Dspex,
    class_path: &str,
    signature: Option<&SignatureSpec>,
    kwargs: Map,
) -> Result<ObjectModule> {
    let session = dspex.bridge.create_session().await?;
    let instance = session
        .create_instance(class_path, signature, Vec::new(), kwargs, None)
        .await?;
    Ok(ObjectModule { instance, session })
}

/// Calls `method(**kwargs)` and decodes the result as `T`.
pub async fn call_method<T: DspyType>(
    object: &ObjectModule,
    method: &str,
    kwargs: Map,
) -> Result<T> {
    let result = object
        .instance
        .call_method(method, Vec::new(), kwargs)
        .await?;
    T::from_value(result.value).map_err(|source| Error::Decode {
        signature: format!("{}.{method}", object.instance.type_name()),
        source,
    })
}

/// Calls `method(**kwargs)` and decodes the prediction as signature `S`'s outputs.
pub async fn call_method_for<S: Signature>(
    object: &ObjectModule,
    method: &str,
    kwargs: Map,
) -> Result<S::Output> {
    let result = object
        .instance
        .call_method(method, Vec::new(), kwargs)
        .await?;
    let outputs = match result.value {
        snakepit_grpc_bridge::Value::Map(map) => map,
        other => {
            return Err(Error::Decode {
                signature: S::spec().name.clone(),
                source: crate::DecodeError::new("a prediction", other.kind()),
            });
        }
    };
    S::Output::from_outputs(outputs).map_err(|source| Error::Decode {
        signature: S::spec().name.clone(),
        source,
    })
}

/// Calls `method(**kwargs)` and ignores what it returns.
pub async fn call_method_unit(object: &ObjectModule, method: &str, kwargs: Map) -> Result<()> {
    object
        .instance
        .call_method(method, Vec::new(), kwargs)
        .await?;
    Ok(())
}
