//! The worker package, the pinned requirements and the `.proto`, embedded at build time.

include!(concat!(env!("OUT_DIR"), "/embedded_python.rs"));
