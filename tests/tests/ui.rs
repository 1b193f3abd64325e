//! Compile-time checks of the macros: each file in `tests/ui/` is one mistake, with the error it
//! must produce beside it (`.stderr`); `tests/ui/pass/` compiles the whole surface.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
