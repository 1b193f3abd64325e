//! What the layers above call: sessions, tools (both directions) and variables.
//!
//! Everything hangs off a [`Session`](sessions::Session), created with
//! [`Bridge::create_session`](crate::Bridge::create_session): its requests all run on one worker,
//! where its state lives.

pub mod dspy;
pub mod sessions;
mod tool_error;
pub mod tools;
pub mod variables;
