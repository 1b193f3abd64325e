//! End-to-end, reliability and trybuild UI tests of dspex live in `tests/`; this library is empty.
//! The `bridge-owner` binary is a helper of the reliability tests.
