//! End-to-end, reliability and trybuild UI tests of dspex live in `tests/`; this library holds
//! what several of them share (`rag`, and `ray_cluster` with the bench). The `bridge-owner` binary is a helper of the reliability
//! tests.

pub mod rag;
pub mod ray_cluster;
