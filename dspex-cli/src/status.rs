//! `dspex status`: this user's live runs (pools) and their workers, from the pool's registry.

use std::process::ExitCode;

use dspex::snakepit_grpc_bridge::snakepit::registry::{
    RunRecord, default_runtime_dir, list_runs, owner_alive,
};

use crate::Failure;

/// The runs of the registry: (live, stale) — a stale run's owner is dead; the next pool that
/// starts kills its workers.
pub(crate) fn runs() -> (Vec<RunRecord>, Vec<RunRecord>) {
    list_runs(&default_runtime_dir())
        .into_iter()
        .filter_map(|(_, record)| record)
        .partition(owner_alive)
}

pub(crate) fn status() -> Result<ExitCode, Failure> {
    let (live, stale) = runs();
    if live.is_empty() {
        println!(
            "no live runs (registry: {})",
            default_runtime_dir().display()
        );
    }
    for run in &live {
        println!(
            "run {}  owner pid {}  {} worker{}",
            run.run_id,
            run.owner_pid,
            run.workers.len(),
            if run.workers.len() == 1 { "" } else { "s" }
        );
        for worker in &run.workers {
            println!("  worker {}  pid {}", worker.slot, worker.pid);
        }
    }
    if !stale.is_empty() {
        println!(
            "{} stale run{} (owner dead): the next pool that starts stops their workers",
            stale.len(),
            if stale.len() == 1 { "" } else { "s" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
