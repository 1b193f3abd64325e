//! Compiles `proto/` with a pure-Rust protobuf compiler (no system protoc), and embeds the Python
//! worker package (`python/`) so that a program using this crate runs outside the repository.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `proto/` and `python/` are links to the workspace's folders in the repository, and plain
    // folders in the published crate.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_dir = root.join("proto");
    let proto = proto_dir.join("snakepit_bridge.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let descriptors = protox::compile([&proto], [&proto_dir])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(descriptors)?;

    let python = root.join("python");
    let package = python.join("snakepit_bridge");
    println!("cargo:rerun-if-changed={}", package.display());
    for lock in [
        "requirements.lock",
        "requirements-test.lock",
        "requirements-ray.lock",
    ] {
        println!("cargo:rerun-if-changed={}", python.join(lock).display());
    }
    let mut files = Vec::new();
    collect_python(&package, &package, &mut files)?;
    files.sort();
    let mut generated = String::from(
        "/// The worker package's files: (path inside `snakepit_bridge/`, contents).\n\
         pub(crate) static PYTHON_PACKAGE: &[(&str, &[u8])] = &[\n",
    );
    for (relative, absolute) in &files {
        println!("cargo:rerun-if-changed={}", absolute.display());
        writeln!(
            generated,
            "    ({relative:?}, include_bytes!({:?})),",
            absolute.display()
        )?;
    }
    generated.push_str("];\n");
    writeln!(
        generated,
        "/// The pinned requirements of the worker.\npub(crate) static REQUIREMENTS_LOCK: &str = include_str!({:?});",
        python.join("requirements.lock").display()
    )?;
    writeln!(
        generated,
        "/// The pinned packages of the worker's tests.\npub(crate) static REQUIREMENTS_TEST_LOCK: &str = include_str!({:?});",
        python.join("requirements-test.lock").display()
    )?;
    writeln!(
        generated,
        "/// Ray and what it needs, for Ray placement.\npub(crate) static REQUIREMENTS_RAY_LOCK: &str = include_str!({:?});",
        python.join("requirements-ray.lock").display()
    )?;
    writeln!(
        generated,
        "/// The wire contract.\npub(crate) static PROTO: &str = include_str!({:?});",
        proto.display()
    )?;
    std::fs::write(
        PathBuf::from(std::env::var("OUT_DIR")?).join("embedded_python.rs"),
        generated,
    )?;
    Ok(())
}

fn collect_python(
    base: &Path,
    dir: &Path,
    out: &mut Vec<(String, PathBuf)>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "__pycache__") {
                println!("cargo:rerun-if-changed={}", path.display());
                collect_python(base, &path, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "py") {
            let relative = path
                .strip_prefix(base)
                .expect("inside the package")
                .to_string_lossy()
                .into_owned();
            out.push((relative, path));
        }
    }
    Ok(())
}
