//! The body of the test worker: a line protocol over stdin and stdout, no Python.
//!
//! It prints `ready` once started. Each request is one line, `<id> <command> [argument]`, served
//! on its own thread so many can be in flight; each reply is `<id> ok <text>` or `<id> err <text>`.
//!
//! Commands: `ping`; `echo TEXT`; `sleep MS`; `pid`; `crash CODE` (exit at once); `hang` (stop
//! answering anything, health checks included); `grandchild` (start a `sleep` in the worker's
//! process group and reply with its pid); `stop` (exit 0).
//!
//! Environment: `TEST_WORKER_START_DELAY_MS` (wait before `ready`), `TEST_WORKER_FAIL_START` (exit
//! 3 instead of starting), `TEST_WORKER_EXIT_AFTER_MS` (exit 9 that long after `ready`),
//! `TEST_WORKER_IGNORE_SIGTERM`, `TEST_WORKER_OUTLIVE_STDIN` (keep running after standard input
//! closes, as a worker that does not notice its owner is gone), and `TEST_WORKER_BARRIER_DIR` + `TEST_WORKER_BARRIER_COUNT` (do not
//! say `ready` until that many workers have started: proves that workers start concurrently).
//! With `TEST_WORKER_EVENTS_FILE`, the worker appends `stop` to that file when it obeys `stop`, and
//! (with `TEST_WORKER_IGNORE_SIGTERM`) `sigterm` for each SIGTERM it ignores.
#![allow(unsafe_code, unreachable_pub)]

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The events file, opened for appending, or -1.
static EVENTS_FD: AtomicI32 = AtomicI32::new(-1);

fn record_event(event: &[u8]) {
    let fd = EVENTS_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) on a descriptor we opened, from a byte slice; async-signal-safe.
        unsafe {
            libc::write(fd, event.as_ptr().cast(), event.len());
        }
    }
}

extern "C" fn note_sigterm(_: libc::c_int) {
    record_event(b"sigterm\n");
}

/// Runs the worker until its standard input closes.
pub fn run() {
    if let Some(path) = std::env::var_os("TEST_WORKER_EVENTS_FILE") {
        use std::os::fd::IntoRawFd;
        if let Ok(file) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
        {
            EVENTS_FD.store(file.into_raw_fd(), Ordering::SeqCst);
        }
    }
    if std::env::var_os("TEST_WORKER_IGNORE_SIGTERM").is_some() {
        // SAFETY: installing a handler that only calls write(2) has no preconditions.
        unsafe {
            libc::signal(
                libc::SIGTERM,
                note_sigterm as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
    if let Some(ms) = env_number("TEST_WORKER_START_DELAY_MS") {
        std::thread::sleep(Duration::from_millis(ms));
    }
    if std::env::var_os("TEST_WORKER_FAIL_START").is_some() {
        eprintln!("test worker: told to fail at start (TEST_WORKER_FAIL_START)");
        std::process::exit(3);
    }
    if let (Some(dir), Some(count)) = (
        std::env::var_os("TEST_WORKER_BARRIER_DIR"),
        env_number("TEST_WORKER_BARRIER_COUNT"),
    ) {
        let dir = std::path::PathBuf::from(dir);
        let _ = std::fs::write(dir.join(std::process::id().to_string()), b"");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::fs::read_dir(&dir)
            .map(|d| d.count() as u64)
            .unwrap_or(0)
            < count
        {
            if Instant::now() > deadline {
                eprintln!("test worker: the other workers never started");
                std::process::exit(4);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    if let Some(ms) = env_number("TEST_WORKER_EXIT_AFTER_MS") {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            eprintln!("test worker: exiting after {ms} ms as asked");
            std::process::exit(9);
        });
    }
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let hung = Arc::new(AtomicBool::new(false));
    reply(&out, "ready");
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if hung.load(Ordering::SeqCst) {
            continue;
        }
        let mut parts = line.splitn(3, ' ');
        let id = parts.next().unwrap_or_default().to_owned();
        let command = parts.next().unwrap_or_default().to_owned();
        let argument = parts.next().unwrap_or_default().to_owned();
        match command.as_str() {
            "crash" => {
                eprintln!("test worker: crashing as asked");
                std::process::exit(argument.parse().unwrap_or(1));
            }
            "stop" => {
                record_event(b"stop\n");
                std::process::exit(0)
            }
            "hang" => hung.store(true, Ordering::SeqCst),
            _ => {
                let out = out.clone();
                std::thread::spawn(move || {
                    let answer = serve(&command, &argument);
                    reply(&out, &format!("{id} {answer}"));
                });
            }
        }
    }
    if std::env::var_os("TEST_WORKER_OUTLIVE_STDIN").is_some() {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

fn serve(command: &str, argument: &str) -> String {
    match command {
        "ping" => "ok pong".into(),
        "echo" => format!("ok {argument}"),
        "pid" => format!("ok {}", std::process::id()),
        "sleep" => match argument.parse() {
            Ok(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                "ok slept".into()
            }
            Err(_) => format!("err not a number of milliseconds: {argument}"),
        },
        // Keeps `argument` MiB, touched, for the rest of the process's life.
        "grow" => match argument.parse::<usize>() {
            Ok(mib) => {
                let kept: &'static mut [u8] = vec![1u8; mib << 20].leak();
                format!("ok {}", kept.len())
            }
            Err(_) => format!("err not a number of MiB: {argument}"),
        },
        "grandchild" => match std::process::Command::new("sleep").arg("1000").spawn() {
            Ok(child) => format!("ok {}", child.id()),
            Err(e) => format!("err {e}"),
        },
        other => format!("err unknown command {other:?}"),
    }
}

fn reply(out: &Mutex<std::io::Stdout>, line: &str) {
    let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
