//! A module's tuned state, held by workers under its hash like a signature.

use std::sync::Arc;

use sha2::{Digest, Sha256};

/// A DSPy module's tuned state as DSPy writes it (`module.dump_state()`: for each predictor of
/// the module, its demos, instructions and field prefixes and descriptions), named by the
/// SHA-256 of its text. A call that carries one runs on a module with that state applied; the
/// worker builds that module once and keeps it, so the state crosses once per worker.
///
/// ```
/// use snakepit_grpc_bridge::api::dspy::ModuleState;
/// let state = ModuleState::new(r#"{"self": {"demos": []}}"#);
/// assert_eq!(state.json(), r#"{"self": {"demos": []}}"#);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ModuleState(Arc<Inner>);

#[derive(PartialEq, Eq)]
struct Inner {
    json: String,
    hash: [u8; 32],
}

impl ModuleState {
    /// The state from its JSON text (an object of predictor name to predictor state).
    pub fn new(json: impl Into<String>) -> Self {
        let json = json.into();
        let hash = Sha256::digest(json.as_bytes()).into();
        ModuleState(Arc::new(Inner { json, hash }))
    }

    /// The JSON text.
    pub fn json(&self) -> &str {
        &self.0.json
    }

    pub(crate) fn hash(&self) -> [u8; 32] {
        self.0.hash
    }
}

impl std::fmt::Debug for ModuleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hash: String = self.0.hash[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        f.debug_struct("ModuleState")
            .field("hash", &hash)
            .field("bytes", &self.0.json.len())
            .finish()
    }
}
