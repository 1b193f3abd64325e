//! Spawning worker processes in their own process group, and signalling them.
//!
//! This is the crate's only `unsafe` code: `pre_exec` (to call `setsid` and `prctl` between fork
//! and exec) and the raw `killpg`/`kill` system calls. Each block is a single async-signal-safe
//! libc call.
#![allow(unsafe_code)]

use std::io;
use std::process::Stdio;
use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::adapter::{WorkerCommand, WorkerContext};

/// Environment variable naming the pool run a worker belongs to.
pub const RUN_ID_ENV: &str = "SNAKEPIT_RUN_ID";
/// Environment variable holding the worker's slot.
pub const WORKER_SLOT_ENV: &str = "SNAKEPIT_WORKER_SLOT";
/// Environment variable holding the pid of the process that owns the pool.
pub const OWNER_PID_ENV: &str = "SNAKEPIT_OWNER_PID";

struct SpawnJob {
    command: Command,
    runtime: tokio::runtime::Handle,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// Linux delivers the parent-death signal when the *thread* that forked the child exits, not the
/// process. Tokio's worker and blocking threads come and go, so every worker is forked from one
/// thread that lives as long as the process.
fn spawner() -> &'static mpsc::Sender<SpawnJob> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnJob>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("snakepit-spawner".into())
            .spawn(move || {
                for mut job in receiver {
                    let _runtime = job.runtime.enter();
                    let _ = job.reply.send(job.command.spawn());
                }
            })
            .expect("the snakepit spawner thread could not be started");
        sender
    })
}

/// Spawns `worker` as the leader of a new session and process group, with its standard error
/// (and standard output, unless the adapter wants it) piped.
pub(crate) async fn spawn(
    worker: &WorkerCommand,
    ctx: &WorkerContext,
    parent_death_signal: bool,
) -> io::Result<Child> {
    let mut command = Command::new(&worker.program);
    command
        .args(&worker.args)
        .envs(worker.env.iter().map(|(k, v)| (k, v)))
        .env(RUN_ID_ENV, &ctx.run_id)
        .env(WORKER_SLOT_ENV, ctx.id.slot.to_string())
        .env(OWNER_PID_ENV, std::process::id().to_string())
        .stdin(if worker.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = &worker.current_dir {
        command.current_dir(dir);
    }
    let owner = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and makes only async-signal-safe
    // system calls (setsid, prctl, getppid); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            #[cfg(target_os = "linux")]
            if parent_death_signal {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                // The owner may have died between fork and prctl: then nobody would kill us.
                if libc::getppid() != owner {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
            }
            #[cfg(not(target_os = "linux"))]
            let _ = (parent_death_signal, owner);
            Ok(())
        });
    }
    let (reply, answer) = oneshot::channel();
    let job = SpawnJob {
        command,
        runtime: tokio::runtime::Handle::current(),
        reply,
    };
    spawner()
        .send(job)
        .map_err(|_| io::Error::other("the snakepit spawner thread is gone"))?;
    answer
        .await
        .map_err(|_| io::Error::other("the snakepit spawner thread dropped the request"))?
}

/// Sends `signal` to every process in the process group `pgid`. A group that no longer exists is
/// not an error.
pub(crate) fn signal_group(pgid: u32, signal: i32) {
    if pgid == 0 || pgid > i32::MAX as u32 {
        return;
    }
    // SAFETY: killpg takes plain integers; a group that does not exist yields ESRCH.
    unsafe {
        libc::killpg(pgid as libc::pid_t, signal);
    }
}

/// Sends `signal` to the single process `pid`.
pub(crate) fn signal_process(pid: u32, signal: i32) {
    if pid == 0 || pid > i32::MAX as u32 {
        return;
    }
    // SAFETY: kill takes plain integers; a process that does not exist yields ESRCH.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// The start time of process `pid` in clock ticks since boot (field 22 of `/proc/PID/stat`), which
/// together with the pid identifies a process even after its pid is reused.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses; fields after it are plain.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether process `pid` exists and is not a zombie.
pub(crate) fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, None | Some("Z") | Some("X"))
}

/// The pids of live processes whose environment says they belong to pool run `run_id`.
///
/// Only processes of the current user can be read; that is exactly the set a pool may clean up.
pub fn processes_of_run(run_id: &str) -> Vec<u32> {
    let marker = format!("{RUN_ID_ENV}={run_id}\0");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let found = environ
            .split_inclusive(|&b| b == 0)
            .any(|var| var == marker.as_bytes());
        if found && is_alive(pid) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}
