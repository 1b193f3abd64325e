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

/// Sends `signal` to the process group `pgid` if it is still the group of run `run_id`: for a
/// group whose leader was already reaped. A group number cannot be reused while any member of the
/// group lives, so a group with a member that carries the run's id is ours; a group without one
/// is either gone or a stranger's that got the number after ours emptied, and is left alone.
pub(crate) fn signal_group_of_run(pgid: u32, run_id: &str, signal: i32) -> bool {
    let ours = group_members(pgid)
        .into_iter()
        .any(|pid| carries_run_id(pid, run_id));
    if ours {
        signal_group(pgid, signal);
    }
    ours
}

/// The live processes whose process group is `pgid`.
pub(crate) fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| process_group(pid) == Some(pgid) && is_alive(pid))
        .collect()
}

/// The process group of `pid` (field 5 of `/proc/PID/stat`).
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// Whether `pid`'s environment says it belongs to pool run `run_id`.
fn carries_run_id(pid: u32, run_id: &str) -> bool {
    let marker = format!("{RUN_ID_ENV}={run_id}\0");
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|environ| {
            environ
                .split_inclusive(|&b| b == 0)
                .any(|var| var == marker.as_bytes())
        })
        .unwrap_or(false)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    fn sleeper_in_own_group(run_id: Option<&str>) -> std::process::Child {
        let mut command = std::process::Command::new("sleep");
        command.arg("30").process_group(0);
        if let Some(run_id) = run_id {
            command.env(RUN_ID_ENV, run_id);
        }
        let child = command.spawn().expect("sleep starts");
        // Right after exec the kernel shows an empty environment for a moment.
        let environ = format!("/proc/{}/environ", child.id());
        while std::fs::read(&environ).map_or(true, |e| e.is_empty()) {
            std::thread::yield_now();
        }
        child
    }

    #[test]
    fn a_group_is_signalled_only_while_it_is_the_runs() {
        let run_id = format!("group-test-{}", std::process::id());
        // A stranger's group (as when our group's number was freed and reused): left alone.
        let mut stranger = sleeper_in_own_group(None);
        assert!(!signal_group_of_run(stranger.id(), &run_id, libc::SIGKILL));
        assert!(stranger.try_wait().unwrap().is_none(), "the stranger lives");
        // The run's own group: killed.
        let mut ours = sleeper_in_own_group(Some(&run_id));
        assert!(signal_group_of_run(ours.id(), &run_id, libc::SIGKILL));
        let status = ours.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        stranger.kill().unwrap();
        stranger.wait().unwrap();
    }
}
