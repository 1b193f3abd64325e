#![allow(missing_docs)]
//! Security: workers are reachable only by their owner; TCP needs the run's token and can use TLS;
//! API keys never show in process arguments, logs, traces or error messages.

mod support;

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, LazyLock, Mutex};

use dspex::Lm;
use dspex::prelude::*;
use dspex::snakepit_grpc_bridge::snakepit;
use dspex::snakepit_grpc_bridge::{Bridge, BridgeError, Map, Transport};
use support::{QA, QAInput, raw_ping, run};

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
        == 0
}

/// Runs `socket-probe` as the user `nobody` to connect to the Unix socket `path`; its exit status
/// and standard error. The probe is copied to a directory `nobody` may enter.
fn connect_as_nobody(path: &Path) -> (bool, String) {
    static PROBE: LazyLock<(tempfile::TempDir, std::path::PathBuf)> = LazyLock::new(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let probe = dir.path().join("socket-probe");
        std::fs::copy(env!("CARGO_BIN_EXE_socket-probe"), &probe).unwrap();
        std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
        (dir, probe)
    });
    let output = Command::new(&PROBE.1)
        .arg(path)
        .current_dir("/")
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("the probe runs as nobody");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn another_user_cannot_reach_a_worker_socket() {
    run(async {
        let bridge = Bridge::builder().workers(1).start().await.unwrap();
        let dir = bridge.pool().adapter().socket_dir().to_owned();
        let meta = std::fs::metadata(&dir).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        assert_eq!(meta.uid(), std::fs::metadata("/proc/self").unwrap().uid());
        let sockets: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "sock" || x == "fast"))
            .collect();
        assert!(!sockets.is_empty());
        // Every other file there (token, LM settings, TLS key) is the owner's alone too.
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let mode = entry.metadata().unwrap().permissions().mode() & 0o077;
            assert!(
                entry
                    .path()
                    .extension()
                    .is_some_and(|x| x == "sock" || x == "fast")
                    || mode == 0,
                "{} is readable by others",
                entry.path().display()
            );
        }
        if !is_root() {
            // Still check that the probe reaches the sockets as their owner: they are live, and
            // the probe would tell a refusal apart.
            for socket in &sockets {
                let output = Command::new(env!("CARGO_BIN_EXE_socket-probe"))
                    .arg(socket)
                    .output()
                    .unwrap();
                assert!(
                    output.status.success(),
                    "the owner connects to {}: {}",
                    socket.display(),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            eprintln!(
                "SKIPPED (not root): connecting as another user needs root to switch users; checked \
                 the directory's mode and ownership, and that the owner connects to {} sockets \
                 (the fast path's SO_PEERCRED refusal is also a pytest)",
                sockets.len()
            );
            bridge.shutdown().await.unwrap();
            return;
        }
        // The control: `nobody` can connect to a socket in an open directory.
        let open = tempfile::tempdir().unwrap();
        std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let control = open.path().join("open.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&control).unwrap();
        std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o777)).unwrap();
        let (ok, stderr) = connect_as_nobody(&control);
        assert!(ok, "the control connection as nobody works: {stderr}");
        // The workers' sockets: refused.
        for socket in &sockets {
            let (ok, stderr) = connect_as_nobody(socket);
            assert!(!ok, "nobody connected to {}", socket.display());
            assert!(stderr.contains("Permission denied"), "{stderr}");
        }
        bridge.shutdown().await.unwrap();
    });
}

/// One worker on `transport` whose LM always answers `answer`; checks that the bridge's own calls
/// (which carry the run token) work: a ping and a typed prediction.
async fn tcp_pool(transport: Transport, answer: &str) -> dspex::Dspex {
    let dspex = support::builder()
        .lm(Lm::dummy(vec![serde_json::json!({ "answer": answer })]))
        .workers(1)
        .bridge(|b| b.transport(transport))
        .start()
        .await
        .unwrap();
    dspex.bridge().ping().await.unwrap();
    let output = QA::predict(
        &dspex,
        QAInput {
            question: "q".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(output.answer, answer);
    dspex
}

async fn worker_port(bridge: &Bridge) -> String {
    let checkout = bridge.pool().checkout().await.unwrap();
    let address = checkout.connection().address().to_owned();
    address
        .strip_prefix("tcp:")
        .expect("a TCP address")
        .to_owned()
}

fn token_of(bridge: &Bridge) -> String {
    std::fs::read_to_string(bridge.pool().adapter().socket_dir().join("token")).unwrap()
}

fn assert_unauthenticated(result: Result<(), tonic::Status>, what: &str) {
    match result {
        Err(status) => assert_eq!(
            status.code(),
            tonic::Code::Unauthenticated,
            "{what}: {status}"
        ),
        Ok(()) => panic!("{what}: the worker answered without the right token"),
    }
}

#[test]
fn tcp_workers_demand_the_run_token() {
    run(async {
        let dspex = tcp_pool(Transport::TcpLoopback, "ok").await;
        let bridge = dspex.bridge();
        let port = worker_port(bridge).await;
        let channel = tonic::transport::Endpoint::try_from(format!("http://{port}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        assert_unauthenticated(raw_ping(channel.clone(), None).await, "no token");
        let wrong = format!("Bearer {}", "0".repeat(64));
        assert_unauthenticated(raw_ping(channel.clone(), Some(&wrong)).await, "wrong token");
        let token = token_of(bridge);
        let almost = format!("Bearer {}x", &token[..63]);
        assert_unauthenticated(
            raw_ping(channel.clone(), Some(&almost)).await,
            "last byte wrong",
        );
        // The control: the real token works, so the refusals above were about the token.
        raw_ping(channel, Some(&format!("Bearer {token}")))
            .await
            .unwrap();
        // The token is never in a process's arguments.
        for pid in snakepit::processes_of_run(bridge.pool().run_id()) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            assert!(!String::from_utf8_lossy(&cmdline).contains(&token));
        }
        dspex.shutdown().await.unwrap();
    });
}

#[test]
fn tcp_with_tls_works_and_refuses_plaintext() {
    run(async {
        let dspex = tcp_pool(Transport::TcpLoopbackTls, "over tls").await;
        let bridge = dspex.bridge();
        let port = worker_port(bridge).await;
        let token = format!("Bearer {}", token_of(bridge));
        // Plaintext HTTP/2 to the TLS port: no answer, even with the token.
        let plaintext = tonic::transport::Endpoint::try_from(format!("http://{port}"))
            .unwrap()
            .connect()
            .await;
        if let Ok(channel) = plaintext {
            assert!(raw_ping(channel, Some(&token)).await.is_err());
        }
        // TLS that trusts the run's certificate, with the token: answered; without: refused.
        let cert = std::fs::read(bridge.pool().adapter().socket_dir().join("tls.crt")).unwrap();
        let channel = support::tls_channel(&port, &cert).await;
        assert_unauthenticated(raw_ping(channel.clone(), None).await, "TLS without token");
        raw_ping(channel, Some(&token)).await.unwrap();
        // A client that does not trust the certificate cannot connect.
        let untrusting = tonic::transport::Endpoint::try_from(format!("https://{port}"))
            .unwrap()
            .tls_config(tonic::transport::ClientTlsConfig::new().domain_name("localhost"))
            .unwrap()
            .connect()
            .await;
        if let Ok(channel) = untrusting {
            assert!(raw_ping(channel, Some(&token)).await.is_err());
        }
        dspex.shutdown().await.unwrap();
    });
}

/// Everything written through `tracing` in this test binary.
static LOGS: LazyLock<Arc<Mutex<Vec<u8>>>> = LazyLock::new(|| {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = buffer.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || SharedWriter(sink.clone()))
        .init();
    buffer
});

struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const SECRET: &str = "sk-test-4f9c2e7a1b8d6053e1c4";

#[test]
fn api_keys_never_show_in_arguments_logs_traces_or_errors() {
    let logs = LazyLock::force(&LOGS).clone();
    run(async {
        let builder = support::builder()
            .import("dspex_secret_tools")
            .lm(Lm::new("openai/gpt-4o-mini")
                // Nothing listens there: the provider call fails at once, offline.
                .api_base("http://127.0.0.1:9/v1")
                .api_key_env("OPENAI_API_KEY"))
            .workers(2)
            .bridge(|b| {
                b.env("OPENAI_API_KEY", SECRET)
                    .env("SNAKEPIT_LOG_LEVEL", "DEBUG")
            });
        let builder_debug = format!("{builder:?}");
        let dspex = builder.start().await.unwrap();
        let mut seen = vec![builder_debug, format!("{:?}", dspex.bridge())];

        // A call that reaches the (unreachable) provider with the key.
        let error = QA::predict(
            &dspex,
            QAInput {
                question: "q".into(),
            },
        )
        .await
        .unwrap_err();
        seen.push(format!("{error}"));
        seen.push(format!("{error:?}"));
        // A Python error and a log line that carry the key itself.
        let leak = dspex
            .bridge()
            .call_tool("leak_key", Map::new())
            .await
            .unwrap_err();
        match &leak {
            BridgeError::Python(e) => {
                assert!(e.message.contains("[REDACTED]"), "{e}");
                seen.push(e.traceback.clone());
            }
            other => panic!("expected a Python error, got {other:?}"),
        }
        seen.push(format!("{leak:?}"));
        // Every process of the run: its arguments.
        let pids = snakepit::processes_of_run(dspex.bridge().pool().run_id());
        assert!(
            pids.len() >= 3,
            "shims, workers and the fork server: {pids:?}"
        );
        for pid in &pids {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            seen.push(String::from_utf8_lossy(&cmdline).into_owned());
        }
        dspex.shutdown().await.unwrap();
        // The workers' standard error arrives through tracing, drained by tasks of its own.
        let arrived = support::eventually(std::time::Duration::from_secs(10), || {
            String::from_utf8_lossy(&logs.lock().unwrap())
                .contains("about to fail with key [REDACTED]")
        })
        .await;
        assert!(arrived, "the worker's log line arrived, redacted");
        let logged = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
        seen.push(logged);
        for (i, text) in seen.iter().enumerate() {
            assert!(!text.contains(SECRET), "the key leaked in item {i}: {text}");
        }
        let mut report = std::io::stderr();
        let _ = writeln!(
            report,
            "API key checked absent from {} places ({} process arguments)",
            seen.len(),
            pids.len()
        );
    });
}
