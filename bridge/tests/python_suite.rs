//! Runs the Python worker's own pytest suite (`python/tests`) in the managed environment, so that
//! `cargo test --workspace` covers both languages.

use std::path::PathBuf;
use std::process::Command;

use snakepit_grpc_bridge::environment::{EnvironmentOptions, PythonEnvironment};

#[test]
fn the_python_worker_tests_pass() {
    // The runtime lock and the test lock (pytest, hypothesis), in an environment of their own.
    let environment =
        PythonEnvironment::resolve(&EnvironmentOptions::default().with_test_requirements())
            .expect("the managed Python environment with the test packages");
    let python_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../python");
    let output = Command::new(environment.python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
        .current_dir(&python_dir)
        .env("PYTHONPATH", &python_dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("pytest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "pytest failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed"), "pytest ran no test:\n{stdout}");
}
