use dspex::prelude::*;

#[dspy_type]
pub enum Shape {
    Circle { radius: f64 },
    Square(f64),
    Point,
}

fn main() {}
