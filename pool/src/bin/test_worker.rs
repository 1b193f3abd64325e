//! A tiny worker for the pool's own tests: a line protocol over stdin and stdout.
//!
//! It prints `ready` once started (after `TEST_WORKER_START_DELAY_MS`, or exits with status 3 if
//! `TEST_WORKER_FAIL_START` is set). Each request is one line, `<id> <command> [argument]`, served
//! on its own thread so many can be in flight; each reply is `<id> ok <text>` or `<id> err <text>`.
//!
//! Commands: `ping`; `echo TEXT`; `sleep MS`; `pid`; `crash CODE` (exit at once); `hang` (stop
//! answering anything, health checks included); `grandchild` (start a `sleep` in the worker's
//! process group and reply with its pid); `stop` (exit 0).

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn main() {
    if let Some(ms) = std::env::var("TEST_WORKER_START_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
    if std::env::var_os("TEST_WORKER_FAIL_START").is_some() {
        eprintln!("test worker: told to fail at start (TEST_WORKER_FAIL_START)");
        std::process::exit(3);
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
            "stop" => std::process::exit(0),
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
