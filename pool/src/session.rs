//! Session affinity: keeping the requests of one session on one worker.

/// How strictly [`Pool::execute_in_session`](crate::Pool::execute_in_session) keeps a session on
/// its worker.
///
/// The first request of a session binds it to the least-loaded worker; later requests go to that
/// worker while it lives. If that worker dies, the session's requests fail with
/// [`PoolError::SessionWorkerLost`](crate::PoolError::SessionWorkerLost) until the session is ended
/// with [`Pool::end_session`](crate::Pool::end_session): state kept in the worker is gone, and the
/// pool never moves a session silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Affinity {
    /// Prefer the session's worker, but when it is busy run on another one rather than wait.
    /// For sessions whose state is only a cache.
    #[default]
    Hint,
    /// Always run on the session's worker, waiting in the queue while it is busy.
    Strict,
}
