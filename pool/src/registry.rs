//! The per-user registry of running pools, and the cleanup of workers whose owner died.
//!
//! Each pool run writes one small JSON file, `<runtime dir>/runs/<run id>.json`, naming its owner
//! (pid and start time) and its live workers (pid and start time). A pool that starts reads the
//! other files: a run whose owner is gone had its workers orphaned, so their process groups (and
//! any process still carrying the run id in its environment) are killed and the file removed. A run
//! whose owner lives is never touched.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::PoolError;
use crate::process;

/// What one run's registry file records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunRecord {
    /// The run's id.
    pub run_id: String,
    /// The pid of the process that owns the pool.
    pub owner_pid: u32,
    /// The owner's start time in clock ticks since boot, so a reused pid is not mistaken for it;
    /// `None` when it could not be read (the owner then counts as alive while its pid exists).
    pub owner_start_time: Option<u64>,
    /// The run's live workers.
    pub workers: Vec<WorkerRecord>,
}

/// One live worker in a [`RunRecord`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkerRecord {
    /// The worker's slot.
    pub slot: usize,
    /// Its pid, which is also its process group id.
    pub pid: u32,
    /// Its start time in clock ticks since boot.
    pub start_time: u64,
}

/// What [`cleanup_orphans`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrphanReport {
    /// Runs whose owner was dead, now removed from the registry.
    pub runs_removed: Vec<String>,
    /// Processes that were still alive and were killed.
    pub processes_killed: Vec<u32>,
}

/// The directory for the registry when none is configured: `$XDG_RUNTIME_DIR/snakepit` if that
/// variable names a directory, else `<temp dir>/snakepit-<uid>`.
pub fn default_runtime_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)
        && dir.is_dir()
    {
        return dir.join("snakepit");
    }
    let uid = current_uid();
    std::env::temp_dir().join(format!("snakepit-{uid}"))
}

#[allow(unsafe_code)]
fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

fn registry_error(path: &Path, source: io::Error) -> PoolError {
    PoolError::Registry {
        path: path.to_owned(),
        source: Arc::new(source),
    }
}

/// Creates `dir` (mode 0700) if needed and checks that it belongs to this user and that nobody
/// else can write to it.
fn private_dir(dir: &Path) -> Result<(), PoolError> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(registry_error(dir, e)),
    }
    let meta = fs::metadata(dir).map_err(|e| registry_error(dir, e))?;
    if meta.uid() != current_uid() {
        return Err(registry_error(
            dir,
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the directory belongs to another user",
            ),
        ));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(registry_error(
            dir,
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                "others can write to the directory; make it mode 0700",
            ),
        ));
    }
    Ok(())
}

fn runs_dir(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("runs")
}

/// Reads every run file in the registry. Files that cannot be parsed are returned as `Err` with
/// their path so the caller can decide.
pub fn list_runs(runtime_dir: &Path) -> Vec<(PathBuf, Option<RunRecord>)> {
    let Ok(entries) = fs::read_dir(runs_dir(runtime_dir)) else {
        return Vec::new();
    };
    let mut runs: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let record = fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<RunRecord>(&b).ok());
            (p, record)
        })
        .collect();
    runs.sort_by(|a, b| a.0.cmp(&b.0));
    runs
}

/// Whether the run's owner still runs. When in doubt (a start time that could not be read, then
/// or now) the owner counts as alive: killing a live owner's workers is the worse mistake.
pub fn owner_alive(record: &RunRecord) -> bool {
    let pid = record.owner_pid;
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return false;
    }
    match (record.owner_start_time, process::start_time(pid)) {
        (Some(recorded), Some(now)) => recorded == now && process::is_alive(pid),
        _ => true,
    }
}

/// Kills the workers of every run in `runtime_dir` whose owner is dead, and removes those runs from
/// the registry. Runs whose owner lives are left alone. A pool does this by itself when it starts.
pub fn cleanup_orphans(runtime_dir: &Path) -> OrphanReport {
    let mut report = OrphanReport::default();
    for (path, record) in list_runs(runtime_dir) {
        let Some(record) = record else {
            // A half-written file: the writer renames complete files into place, so this one is
            // junk left by a crash between write and rename; only remove it once it is stale.
            if is_stale(&path) {
                let _ = fs::remove_file(&path);
            }
            continue;
        };
        if owner_alive(&record) {
            continue;
        }
        for worker in &record.workers {
            if process::start_time(worker.pid) == Some(worker.start_time) {
                process::signal_group(worker.pid, libc::SIGKILL);
                report.processes_killed.push(worker.pid);
            }
        }
        // Processes that left the group (or whose leader died first) still carry the run id.
        for pid in process::processes_of_run(&record.run_id) {
            process::signal_process(pid, libc::SIGKILL);
            if !report.processes_killed.contains(&pid) {
                report.processes_killed.push(pid);
            }
        }
        if fs::remove_file(&path).is_ok() {
            tracing::info!(run_id = %record.run_id, owner_pid = record.owner_pid,
                killed = report.processes_killed.len(), "cleaned up an orphaned pool run");
            report.runs_removed.push(record.run_id);
        }
    }
    report
}

fn is_stale(path: &Path) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() > 60)
}

/// A new, unique run id: `<owner pid>-<microseconds since the epoch, hex>-<counter>`.
///
/// ```
/// let a = snakepit::new_run_id();
/// assert_ne!(a, snakepit::new_run_id());
/// assert!(a.starts_with(&format!("{}-", std::process::id())));
/// ```
pub fn new_run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{micros:x}-{n}", std::process::id())
}

/// This run's entry in the registry, kept up to date as workers come and go.
#[derive(Debug)]
pub(crate) struct RunRegistry {
    file: PathBuf,
    record: std::sync::Mutex<RunRecord>,
}

impl RunRegistry {
    /// Cleans up orphaned runs in `runtime_dir`, then registers a new run.
    pub(crate) fn open(runtime_dir: &Path, run_id: &str) -> Result<Self, PoolError> {
        private_dir(runtime_dir)?;
        let runs = runs_dir(runtime_dir);
        private_dir(&runs)?;
        let report = cleanup_orphans(runtime_dir);
        if !report.runs_removed.is_empty() {
            tracing::warn!(runs = ?report.runs_removed, killed = ?report.processes_killed,
                "killed the workers of pool runs whose owner had died");
        }
        let owner_pid = std::process::id();
        // Our own /proc entry is always there; a failed read is recorded as unknown, never as
        // a start time that would make this live run look dead to other pools.
        let owner_start_time = process::start_time(owner_pid);
        let registry = RunRegistry {
            file: runs.join(format!("{run_id}.json")),
            record: std::sync::Mutex::new(RunRecord {
                run_id: run_id.to_owned(),
                owner_pid,
                owner_start_time,
                workers: Vec::new(),
            }),
        };
        registry.write(&registry.record.lock().expect("registry lock"))?;
        Ok(registry)
    }

    fn write(&self, record: &RunRecord) -> Result<(), PoolError> {
        let tmp = self.file.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(record).expect("a run record always serialises");
        fs::write(&tmp, bytes)
            .and_then(|()| fs::rename(&tmp, &self.file))
            .map_err(|e| registry_error(&self.file, e))
    }

    /// Records that `slot` now runs as `pid`.
    pub(crate) fn add_worker(&self, slot: usize, pid: u32) {
        let mut record = self.record.lock().expect("registry lock");
        record.workers.retain(|w| w.slot != slot);
        record.workers.push(WorkerRecord {
            slot,
            pid,
            start_time: process::start_time(pid).unwrap_or_default(),
        });
        record.workers.sort_by_key(|w| w.slot);
        if let Err(e) = self.write(&record) {
            tracing::warn!(error = %e, "could not update the process registry");
        }
    }

    /// Records that `slot` has no live process.
    pub(crate) fn remove_worker(&self, slot: usize) {
        let mut record = self.record.lock().expect("registry lock");
        record.workers.retain(|w| w.slot != slot);
        if let Err(e) = self.write(&record) {
            tracing::warn!(error = %e, "could not update the process registry");
        }
    }

    /// The process groups of the workers still recorded.
    pub(crate) fn worker_groups(&self) -> BTreeMap<usize, u32> {
        let record = self.record.lock().expect("registry lock");
        record.workers.iter().map(|w| (w.slot, w.pid)).collect()
    }

    /// Removes this run from the registry.
    pub(crate) fn close(&self) {
        let _ = fs::remove_file(&self.file);
    }

    /// The path of this run's file.
    pub(crate) fn file(&self) -> &Path {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(owner_pid: u32, owner_start_time: Option<u64>) -> RunRecord {
        RunRecord {
            run_id: "test-run".into(),
            owner_pid,
            owner_start_time,
            workers: Vec::new(),
        }
    }

    #[test]
    fn an_owner_whose_start_time_is_unknown_counts_as_alive_while_its_pid_exists() {
        let me = std::process::id();
        assert!(owner_alive(&record(me, None)));
        assert!(owner_alive(&record(me, process::start_time(me))));
        // A different start time: the pid was reused by another process.
        let wrong = process::start_time(me).unwrap() + 1;
        assert!(!owner_alive(&record(me, Some(wrong))));
        // No such process at all.
        assert!(!owner_alive(&record(u32::MAX / 2, None)));
    }

    #[test]
    fn a_live_owner_with_an_unknown_start_time_keeps_its_run() {
        let dir = tempfile::tempdir().unwrap();
        private_dir(&runs_dir(dir.path())).unwrap();
        let file = runs_dir(dir.path()).join("live.json");
        fs::write(
            &file,
            serde_json::to_vec(&record(std::process::id(), None)).unwrap(),
        )
        .unwrap();
        let report = cleanup_orphans(dir.path());
        assert!(report.runs_removed.is_empty(), "{report:?}");
        assert!(file.exists());
    }

    #[test]
    fn records_written_before_start_times_were_optional_still_read() {
        let old = r#"{"run_id":"r","owner_pid":1,"owner_start_time":42,"workers":[]}"#;
        let parsed: RunRecord = serde_json::from_str(old).unwrap();
        assert_eq!(parsed.owner_start_time, Some(42));
    }
}
