//! End-to-end and trybuild UI tests of dspex live in `tests/`; this library is empty.
