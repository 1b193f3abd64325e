//! `dspex setup` and `dspex cache prune`.

use std::process::ExitCode;
use std::time::Instant;

use dspex::snakepit_grpc_bridge::environment::{
    EnvironmentOptions, PythonEnvironment, default_cache_dir, prune_stale_environments,
};

use crate::Failure;

/// Provisions the managed environment (with Ray when `ray`; or checks `DSPEX_PYTHON`) and says
/// where it is.
pub(crate) fn setup(ray: bool) -> Result<ExitCode, Failure> {
    let started = Instant::now();
    let options = if ray {
        EnvironmentOptions::default().with_ray()
    } else {
        EnvironmentOptions::default()
    };
    let environment =
        PythonEnvironment::resolve(&options).map_err(|e| Failure::new(dspex::error_chain(&e)))?;
    println!(
        "ready: {} ({}, {:.1} s)",
        environment.python().display(),
        if environment.is_managed() {
            "managed environment"
        } else {
            "DSPEX_PYTHON, used as it is"
        },
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Removes stale environments from the cache.
pub(crate) fn prune() -> Result<ExitCode, Failure> {
    let removed =
        prune_stale_environments(None).map_err(|e| Failure::new(dspex::error_chain(&e)))?;
    if removed.is_empty() {
        println!(
            "nothing to prune in {}",
            default_cache_dir().join("venvs").display()
        );
    }
    for path in &removed {
        println!("removed {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
