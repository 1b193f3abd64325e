//! Worker lifecycle through the bridge: crashes, the private transport, start-up failures, and the
//! managed environment from a cold cache.

mod common;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{builder, eventually, run};
use snakepit::PoolError;
use snakepit_grpc_bridge::api::sessions::Session;
use snakepit_grpc_bridge::environment::{EnvironmentError, EnvironmentOptions, PythonEnvironment};
use snakepit_grpc_bridge::{Bridge, BridgeError, Map, Transport, Value, args};

/// Kills the worker of `session` with SIGKILL in the middle of a long call, checks that the call
/// ends at once with a typed crash error, and gives the session back.
async fn kill_mid_call(session: Session) -> Session {
    let info = session.call_tool("whoami", Map::new()).await.unwrap();
    let pid = info.as_map().unwrap()["pid"].as_i64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let started_arg = started.to_str().unwrap().to_owned();
    let call = tokio::spawn(async move {
        let outcome = session
            .call_tool(
                "slow",
                args([
                    ("seconds", Value::from(60.0)),
                    ("started_file", Value::from(started_arg)),
                ]),
            )
            .await;
        (outcome, session)
    });
    // The tool runs in the worker: the kill lands mid-call.
    assert!(
        eventually(Duration::from_secs(10), || started.exists()).await,
        "the slow tool started"
    );
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let (outcome, session) = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call returns, it does not hang")
        .unwrap();
    match outcome {
        Err(BridgeError::Pool(PoolError::WorkerCrashed { exit, .. })) => {
            assert_eq!(exit.signal(), Some(libc::SIGKILL), "{exit}")
        }
        other => panic!("expected WorkerCrashed, got {other:?}"),
    }
    session
}

#[test]
fn sigkill_of_a_worker_mid_call_is_a_typed_error_and_the_worker_is_replaced() {
    run(async {
        // Plain spawn (the fork server's fallback) here; the fork-server test below covers the same
        // crash with forked workers.
        let bridge = builder()
            .workers(2)
            .fork_server(false)
            .start()
            .await
            .unwrap();
        assert!(!bridge.pool().adapter().uses_fork_server());
        let session = kill_mid_call(bridge.create_session().await.unwrap()).await;
        bridge.pool().await_ready().await.unwrap();
        assert_eq!(bridge.pool().stats().restarts, 1);
        // The session's state died with its worker: it is told so, not moved.
        let lost = session.call_tool("whoami", Map::new()).await.unwrap_err();
        assert!(
            matches!(lost, BridgeError::Pool(PoolError::SessionWorkerLost { .. })),
            "{lost:?}"
        );
        session.close().await.unwrap();
        let fresh = bridge.create_session().await.unwrap();
        assert_eq!(
            fresh.call_tool("add", args([("a", 41)])).await.unwrap(),
            Value::Int(42)
        );
        bridge.shutdown().await.unwrap();
    })
}

/// The answer of one `dspy.Predict` call of a question-answer signature on the pool's LM.
async fn answer(bridge: &Bridge) -> Value {
    use snakepit_grpc_bridge::api::dspy::{FieldType, SignatureSpec};
    let qa = SignatureSpec::new("QA")
        .input("question", FieldType::String)
        .output("answer", FieldType::String);
    let out = bridge
        .predict(&qa, args([("question", "q")]))
        .await
        .unwrap();
    out.outputs["answer"].clone()
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X')
    })
}

/// The live children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|&p| alive(p))
        .collect()
}

/// The pipes process `pid` has open (`pipe:[inode]`).
fn pipes_of(pid: u32) -> HashSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .map(|target| target.to_string_lossy().into_owned())
                .filter(|target| target.starts_with("pipe:"))
                .collect()
        })
        .unwrap_or_default()
}

/// Inodes of the sockets process `pid` has open.
fn socket_inodes(pid: u32) -> HashSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .map(str::to_owned)
        })
        .collect()
}

/// Inodes of all TCP sockets in LISTEN state.
fn listening_tcp_inodes() -> HashSet<String> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<_> = line.split_whitespace().collect();
                    (fields.get(3) == Some(&"0A")).then(|| fields[9].to_owned())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn workers_listen_on_unix_sockets_in_a_private_directory_and_never_on_tcp() {
    run(async {
        let bridge = builder().workers(2).start().await.unwrap();
        let dir = bridge.pool().adapter().socket_dir().to_owned();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "socket directory {}", dir.display());
        let sockets: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with('w') && name.ends_with(".sock")
            })
            .collect();
        assert_eq!(sockets.len(), 2, "one gRPC socket per worker");
        for socket in &sockets {
            let fast = socket.path().with_extension("fast");
            assert!(fast.exists(), "and its fast-path socket beside it");
        }
        let listening = listening_tcp_inodes();
        // The Python workers themselves (forked from the fork server), their shims, and the fork
        // server: none listens on TCP.
        let checkouts = [
            bridge.pool().checkout().await.unwrap(),
            bridge.pool().checkout().await.unwrap(),
        ];
        let mut pids: Vec<u32> = checkouts.iter().map(|c| c.connection().pid()).collect();
        drop(checkouts);
        pids.extend(bridge.pool().workers().iter().map(|w| w.pid.unwrap()));
        for pid in pids {
            let open = socket_inodes(pid);
            assert!(!open.is_empty());
            assert!(open.is_disjoint(&listening), "process {pid} listens on TCP");
        }
        bridge.shutdown().await.unwrap();
    })
}

#[test]
fn a_fork_server_that_cannot_start_leaves_plain_spawn_and_the_pool_works() {
    use snakepit_grpc_bridge::api::dspy::Lm;
    run(async {
        let fails = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/python_no_fork_server");
        let bridge = builder()
            .python_path(fails)
            .workers(2)
            .fork_server(true)
            .lm(Lm::dummy(vec![Value::Map(args([("answer", "plain")]))]))
            .start()
            .await
            .expect("the pool starts without its fork server");
        assert!(!bridge.pool().adapter().uses_fork_server());
        assert_eq!(bridge.pool().adapter().fork_server_pid(), None);
        // The workers are plain `python -m snakepit_bridge.server` processes, and serve.
        for worker in bridge.pool().workers() {
            let cmdline = std::fs::read(format!("/proc/{}/cmdline", worker.pid.unwrap())).unwrap();
            assert!(String::from_utf8_lossy(&cmdline).contains("snakepit_bridge.server"));
        }
        assert_eq!(answer(&bridge).await, Value::from("plain"));
        bridge.shutdown().await.unwrap();
    })
}

#[test]
fn tcp_loopback_is_used_only_when_asked() {
    run(async {
        let bridge = builder()
            .workers(1)
            .transport(Transport::TcpLoopback)
            .start()
            .await
            .unwrap();
        let address = bridge
            .pool()
            .execute(|c| async move { c.address().to_owned() })
            .await
            .unwrap();
        assert!(address.starts_with("tcp:127.0.0.1:"), "{address}");
        assert_eq!(
            bridge
                .call_tool("add", args([("a", 1), ("b", 2)]))
                .await
                .unwrap(),
            Value::Int(3)
        );
        bridge.shutdown().await.unwrap();
    })
}

#[test]
fn a_worker_that_cannot_import_its_tools_fails_the_start_with_its_stderr() {
    run(async {
        let err = builder()
            .workers(1)
            .import("module_that_does_not_exist")
            .pool(|p| p.max_restarts(0))
            .start()
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, BridgeError::Pool(PoolError::StartupFailed { .. })),
            "{err:?}"
        );
        assert!(text.contains("ModuleNotFoundError"), "{text}");
        assert!(text.contains("module_that_does_not_exist"), "{text}");
    })
}

#[test]
fn a_missing_or_old_interpreter_is_a_clear_error() {
    run(async {
        let err = Bridge::builder()
            .python("/nonexistent/python3")
            .start()
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                BridgeError::Environment(EnvironmentError::PythonNotFound { .. })
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("DSPEX_PYTHON"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("python");
        std::fs::write(&old, "#!/bin/sh\necho 3 8 3.8.10\n").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = Bridge::builder().python(&old).start().await.unwrap_err();
        match err {
            BridgeError::Environment(EnvironmentError::PythonTooOld { found, .. }) => {
                assert_eq!(found, "3.8.10")
            }
            other => panic!("expected PythonTooOld, got {other:?}"),
        }
    })
}

/// Set, it makes `helper_resolve_with_the_path_given` resolve the managed environment (in the
/// default cache) and print the interpreter it was built from, or the error.
const RESOLVE_WITH_PATH: &str = "DSPEX_TEST_RESOLVE_WITH_PATH";

/// Not a test of its own: the body of the child processes below (it does nothing unless
/// `RESOLVE_WITH_PATH` is set).
#[test]
fn helper_resolve_with_the_path_given() {
    if std::env::var_os(RESOLVE_WITH_PATH).is_some() {
        match PythonEnvironment::resolve(&EnvironmentOptions::default()) {
            Ok(environment) => println!("RESOLVED {}", environment.python().display()),
            Err(error) => println!("ERROR {error}"),
        }
    }
}

/// Resolves the environment in a child process whose `PATH` is only `dir`.
fn resolve_with_path(dir: &std::path::Path) -> String {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_resolve_with_the_path_given",
            "--nocapture",
        ])
        .env(RESOLVE_WITH_PATH, "1")
        .env("PATH", dir)
        .env_remove("DSPEX_BOOTSTRAP_PYTHON")
        .env_remove("DSPEX_PYTHON")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find(|l| l.starts_with("RESOLVED") || l.starts_with("ERROR"))
        .unwrap_or_else(|| panic!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr)))
        .to_owned()
}

#[test]
fn an_old_python3_gives_way_to_a_newer_python3_x_and_the_error_lists_what_was_tried() {
    let real = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    let real = String::from_utf8_lossy(&real.stdout).trim().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("python3");
    std::fs::write(&old, "#!/bin/sh\necho 3 9 3.9.18\n").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    let error = resolve_with_path(dir.path());
    assert!(
        error.starts_with("ERROR no Python 3.11 or newer found")
            && error.contains("python3 (3.9.18)")
            && error.contains("python3.12 (not found)")
            && error.contains("DSPEX_BOOTSTRAP_PYTHON"),
        "{error}"
    );
    // A newer interpreter by its versioned name is taken instead.
    std::os::unix::fs::symlink(&real, dir.path().join("python3.12")).unwrap();
    let resolved = resolve_with_path(dir.path());
    assert!(
        resolved.starts_with("RESOLVED ") && resolved.contains("/venvs/py3."),
        "{resolved}"
    );
}

/// Resolves the managed environment in a child process with `installer` as `DSPEX_INSTALLER`
/// and `cache` as its cache: the child's output, and whether it succeeded.
fn resolve_with_installer(installer: &str, cache: &std::path::Path) -> (String, bool) {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_resolve_the_environment_in_a_child_process",
            "--nocapture",
        ])
        .env(RESOLVE_IN_CHILD, cache)
        .env("DSPEX_INSTALLER", installer)
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (text, output.status.success())
}

#[test]
fn pip_installs_the_same_hash_checked_lock_when_asked_and_an_unknown_installer_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let (output, ok) = resolve_with_installer("conda", cache.path());
    assert!(
        !ok && output.contains("DSPEX_INSTALLER=\"conda\" is not an installer"),
        "{output}"
    );
    let (output, ok) = resolve_with_installer("pip", cache.path());
    assert!(ok, "{output}");
    assert!(
        output.contains("Successfully installed") && !output.contains("installing uv"),
        "pip installed it: {output}"
    );
    let venv = std::fs::read_dir(cache.path().join("venvs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir())
        .expect("an environment");
    let check = std::process::Command::new(venv.join("bin/python"))
        .args(["-c", "import dspy, grpc, optuna; import importlib.util as u; print(u.find_spec('pytest') is None)"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&check.stdout).trim(),
        "True",
        "the runtime lock only"
    );
}

/// Set to a cache directory, it makes `helper_resolve_the_environment_in_a_child_process` resolve
/// the managed environment there and print its interpreter.
const RESOLVE_IN_CHILD: &str = "DSPEX_TEST_RESOLVE_IN_CHILD";

/// Not a test of its own: the body of the child processes of the race below (it does nothing
/// unless `RESOLVE_IN_CHILD` is set).
#[test]
fn helper_resolve_the_environment_in_a_child_process() {
    if let Some(cache) = std::env::var_os(RESOLVE_IN_CHILD) {
        let options = EnvironmentOptions::default().cache_dir(cache);
        match PythonEnvironment::resolve(&options) {
            Ok(environment) => println!("PYTHON {}", environment.python().display()),
            Err(error) => panic!("ERROR {error}"),
        }
    }
}

#[test]
fn the_managed_environment_is_built_once_from_a_cold_cache_even_when_raced_and_rebuilt_when_broken()
{
    let cache = tempfile::tempdir().unwrap();
    let options = EnvironmentOptions::default().cache_dir(cache.path());
    // Two processes race to resolve it at once: the file lock makes one build and the other wait.
    let racers: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "helper_resolve_the_environment_in_a_child_process",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(RESOLVE_IN_CHILD, cache.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<_> = racers
        .into_iter()
        .map(|r| r.wait_with_output().unwrap())
        .collect();
    let mut builds = 0;
    let mut pythons = Vec::new();
    for output in &outputs {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        builds += stderr.matches("creating the Python environment").count();
        pythons.extend(
            stdout
                .lines()
                // The harness may print "test <name> ... " first on the same line.
                .filter_map(|l| l.split_once("PYTHON ").map(|(_, p)| p.trim().to_owned())),
        );
    }
    assert_eq!(builds, 1, "exactly one of the two processes built it");
    assert_eq!(pythons.len(), 2);
    assert_eq!(pythons[0], pythons[1]);
    let envs = [PythonEnvironment::resolve(&options).unwrap()];
    assert_eq!(envs[0].python().to_str().unwrap(), pythons[0]);
    assert!(envs[0].is_managed());
    let marker = envs[0]
        .python()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join(".dspex-ready");
    let built = std::fs::metadata(&marker).unwrap().modified().unwrap();

    run(async {
        let bridge = Bridge::builder()
            .cache_dir(cache.path())
            .workers(2)
            .start()
            .await
            .unwrap();
        assert_eq!(
            bridge
                .call_tool("snakepit.echo", args([("value", "warm")]))
                .await
                .unwrap(),
            Value::from("warm")
        );
        bridge.shutdown().await.unwrap();
    });
    let again = PythonEnvironment::resolve(&options).unwrap();
    assert_eq!(again.python(), envs[0].python());
    assert_eq!(
        std::fs::metadata(&marker).unwrap().modified().unwrap(),
        built,
        "reused, not rebuilt"
    );

    // An interrupted creation (no ready marker, half the files) is removed and rebuilt.
    let venv = marker.parent().unwrap().to_owned();
    std::fs::remove_file(&marker).unwrap();
    std::fs::remove_dir_all(venv.join("lib")).unwrap();
    let rebuilt = PythonEnvironment::resolve(&options).unwrap();
    assert!(marker.exists());
    let status = std::process::Command::new(rebuilt.python())
        .args(["-c", "import dspy, grpc"])
        .status()
        .unwrap();
    assert!(status.success());

    // A finished environment that lost a package since (ready marker present) is detected at the
    // next start and rebuilt, instead of workers failing to import.
    let site = std::fs::read_dir(venv.join("lib"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir())
        .unwrap();
    std::fs::remove_dir_all(site.join("dspy")).unwrap();
    let repaired = PythonEnvironment::resolve(&options).unwrap();
    let status = std::process::Command::new(repaired.python())
        .args(["-c", "import dspy"])
        .status()
        .unwrap();
    assert!(status.success(), "dspy is back");
}

#[test]
fn workers_forked_from_a_fork_server_serve_crash_are_replaced_and_leave_nothing_behind() {
    use snakepit_grpc_bridge::api::dspy::Lm;
    run(async {
        let lm = Lm::dummy(vec![Value::Map(args([("answer", "forked")]))]);
        let bridge = builder()
            .workers(2)
            .fork_server(true)
            .lm(lm)
            .start()
            .await
            .unwrap();
        assert!(bridge.pool().adapter().uses_fork_server());
        // The pool supervises the shims; each worker is a child of the fork server.
        let identity = bridge.ping().await.unwrap();
        let shims: Vec<u32> = bridge
            .pool()
            .workers()
            .iter()
            .map(|w| w.pid.unwrap())
            .collect();
        assert!(
            !shims.contains(&identity.pid),
            "the worker is not the shim itself"
        );
        assert_eq!(
            bridge
                .call_tool("add", args([("a", 1), ("b", 2)]))
                .await
                .unwrap(),
            Value::Int(3)
        );
        assert_eq!(answer(&bridge).await, Value::from("forked"));

        // A forked worker killed mid-call: typed error, replacement, and its shim is gone too.
        let _session = kill_mid_call(bridge.create_session().await.unwrap()).await;
        bridge.pool().await_ready().await.unwrap();
        assert_eq!(
            bridge.call_tool("add", args([("a", 2)])).await.unwrap(),
            Value::Int(3)
        );

        // Killing a shim (as a health check would) takes its worker along: one of the fork
        // server's two workers dies, the other lives, and the slot gets a new generation.
        let fork_server = bridge.pool().adapter().fork_server_pid().unwrap();
        let workers_before = children(fork_server);
        assert_eq!(workers_before.len(), 2, "{workers_before:?}");
        // The workers share none of the fork server's own pipes (its signal wake-up pipe): a
        // forked child closes what is not its own.
        // (Not counting what it inherited from this process, such as cargo's jobserver pipe.)
        let server_pipes: HashSet<String> = pipes_of(fork_server)
            .difference(&pipes_of(std::process::id()))
            .cloned()
            .collect();
        assert!(
            !server_pipes.is_empty(),
            "the fork server has its wake-up pipe"
        );
        for &worker in &workers_before {
            let shared: Vec<_> = pipes_of(worker)
                .intersection(&server_pipes)
                .cloned()
                .collect();
            assert!(
                shared.is_empty(),
                "worker {worker} holds the fork server's pipes {shared:?}"
            );
        }
        let slot = &bridge.pool().workers()[1];
        let (shim, generation) = (slot.pid.unwrap(), slot.id.generation);
        std::process::Command::new("kill")
            .args(["-9", &shim.to_string()])
            .status()
            .unwrap();
        assert!(
            eventually(Duration::from_secs(10), || {
                workers_before.iter().filter(|&&pid| alive(pid)).count() == 1
            })
            .await,
            "the shim's worker died with it"
        );
        assert!(
            eventually(Duration::from_secs(30), || {
                bridge.pool().workers()[1].id.generation > generation
            })
            .await,
            "the slot was restarted"
        );
        bridge.pool().await_ready().await.unwrap();
        assert_eq!(
            children(fork_server).len(),
            2,
            "a new worker was forked for the slot"
        );

        // After shutdown nothing is left: the fork server, the workers it forked (which carry its
        // command line) and the shims all name the private socket directory on theirs.
        let socket_dir = bridge
            .pool()
            .adapter()
            .socket_dir()
            .to_string_lossy()
            .into_owned();
        let forked = || {
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .chars()
                        .all(|c| c.is_ascii_digit())
                })
                .filter(|e| {
                    let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                    let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                    String::from_utf8_lossy(&cmdline).contains(&socket_dir) && !stat.contains(") Z")
                })
                .count()
        };
        let before = forked();
        assert!(
            before >= 3,
            "the fork server and its two workers (and their shims): {before}"
        );
        bridge.shutdown().await.unwrap();
        assert!(
            eventually(Duration::from_secs(10), || forked() == 0).await,
            "{} forked processes left",
            forked()
        );
    })
}
