//! A tiny worker for the pool's own tests; see `tests/support/line_worker.rs`.

#[path = "../../tests/support/line_worker.rs"]
mod line_worker;

fn main() {
    line_worker::run();
}
