//! Sessions: state kept in one worker (variables, Rust tools, objects), with an idle TTL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::api::tools::CallbackLink;
use crate::bridge::Bridge;
use crate::error::{BridgeError, Result};
use crate::proto::{self as pb, session_response};

/// Options of a new session.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SessionOptions {
    /// Idle time after which the worker forgets the session. Default: one hour.
    pub ttl: Option<Duration>,
    /// Free-form labels kept with the session.
    pub metadata: HashMap<String, String>,
}

impl SessionOptions {
    /// Sets the idle time-to-live.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// What a worker knows of a session.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The session's id.
    pub id: String,
    /// Its idle time-to-live.
    pub ttl: Duration,
    /// Its labels.
    pub metadata: HashMap<String, String>,
    /// Names of its variables.
    pub variables: Vec<String>,
    /// Names of the Rust tools Python can call in it.
    pub rust_tools: Vec<String>,
}

impl From<pb::SessionInfo> for SessionInfo {
    fn from(info: pb::SessionInfo) -> Self {
        SessionInfo {
            id: info.session_id,
            ttl: Duration::from_secs(u64::from(info.ttl_seconds)),
            metadata: info.metadata,
            variables: info.variables,
            rust_tools: info.rust_tools,
        }
    }
}

fn session_result(response: pb::SessionResponse) -> Result<SessionInfo> {
    match response.result {
        Some(session_response::Result::Session(info)) => Ok(info.into()),
        Some(session_response::Result::Error(error)) => Err(error.into()),
        None => Err(BridgeError::Protocol("an empty session response".into())),
    }
}

/// A session: every call through it runs on the worker that holds its state.
///
/// Close it with [`Session::close`]; dropping it also forgets it (in the background).
#[derive(Debug)]
pub struct Session {
    pub(crate) bridge: Bridge,
    pub(crate) id: String,
    pub(crate) callbacks: tokio::sync::Mutex<Option<Arc<CallbackLink>>>,
    closed: std::sync::atomic::AtomicBool,
}

impl Bridge {
    /// Creates a session with the default options.
    pub async fn create_session(&self) -> Result<Session> {
        self.create_session_with(SessionOptions::default()).await
    }

    /// Creates a session on the least-loaded worker.
    pub async fn create_session_with(&self, options: SessionOptions) -> Result<Session> {
        let id = self.new_session_id();
        let request = pb::InitializeSessionRequest {
            session_id: id.clone(),
            ttl_seconds: options
                .ttl
                .map_or(0, |t| u32::try_from(t.as_secs().max(1)).unwrap_or(u32::MAX)),
            metadata: options.metadata,
        };
        let response = self
            .call(Some(&id), |mut c| async move {
                c.initialize_session(request).await
            })
            .await;
        match response.and_then(|r| session_result(r.into_inner())) {
            Ok(_) => Ok(Session {
                bridge: self.clone(),
                id,
                callbacks: tokio::sync::Mutex::new(None),
                closed: Default::default(),
            }),
            Err(e) => {
                self.pool.end_session(&id);
                Err(e)
            }
        }
    }
}

impl Session {
    /// The session's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The bridge this session belongs to.
    pub fn bridge(&self) -> &Bridge {
        &self.bridge
    }

    /// What the worker knows of this session.
    pub async fn info(&self) -> Result<SessionInfo> {
        let request = pb::SessionRequest {
            session_id: self.id.clone(),
        };
        let response = self
            .bridge
            .call(Some(&self.id), |mut c| async move {
                c.get_session(request).await
            })
            .await?;
        session_result(response.into_inner())
    }

    /// Forgets the session on its worker (variables, Rust tools, objects) and in the pool.
    pub async fn close(&self) -> Result<()> {
        if self.closed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        if let Some(link) = self.callbacks.lock().await.take() {
            link.close();
        }
        let request = pb::SessionRequest {
            session_id: self.id.clone(),
        };
        let result = self
            .bridge
            .call(Some(&self.id), |mut c| async move {
                c.cleanup_session(request).await
            })
            .await;
        self.bridge.pool.end_session(&self.id);
        match result {
            Ok(_) => Ok(()),
            // The worker (and the session with it) is already gone.
            Err(BridgeError::Pool(snakepit::PoolError::SessionWorkerLost { .. })) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if let Ok(mut guard) = self.callbacks.try_lock()
            && let Some(link) = guard.take()
        {
            link.close();
        }
        let (bridge, id) = (self.bridge.clone(), self.id.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let request = pb::SessionRequest {
                    session_id: id.clone(),
                };
                let _ = bridge
                    .call(Some(&id), |mut c| async move {
                        c.cleanup_session(request).await
                    })
                    .await;
                bridge.pool.end_session(&id);
            });
        } else {
            bridge.pool.end_session(&id);
        }
    }
}
