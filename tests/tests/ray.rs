#![allow(missing_docs)]
//! A local Ray cluster for the Ray placement tests (issue 16): Ray is provisioned as an optional
//! extra (`requirements-ray.lock`, an environment of its own); the test starts a head, reaches it,
//! and stops it, leaving no Ray process behind.
//!
//! Ray binds several of its ports to every interface whatever `--node-ip-address` says, so the
//! cluster runs in a network namespace of the test's own, where loopback is the only interface:
//! the test re-runs itself under `unshare --net --map-root-user` (after provisioning, which needs
//! the package registry).

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dspex::snakepit_grpc_bridge::environment::{EnvironmentOptions, PythonEnvironment};
use support::{alive, python_dir};

/// A free TCP port on loopback.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .filter(|pid| alive(*pid))
        .collect()
}

/// A Ray head on loopback, started by the test (`ray start --head --block`) and stopped with it.
struct RayCluster {
    head: Child,
    address: String,
    temp_dir: tempfile::TempDir,
}

impl RayCluster {
    fn start(python: &Path) -> RayCluster {
        let ray = python.with_file_name("ray");
        // Ray's session folders live under a short path (its Unix sockets have a length limit).
        let temp_dir = tempfile::Builder::new()
            .prefix("ray")
            .tempdir_in("/tmp")
            .unwrap();
        let port = free_port();
        let head = Command::new(&ray)
            .args(["start", "--head", "--block", "--disable-usage-stats"])
            .args(["--node-ip-address", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(["--num-cpus", "2"])
            .args([
                "--include-dashboard",
                "true",
                "--dashboard-host",
                "127.0.0.1",
            ])
            .args(["--dashboard-port", &free_port().to_string()])
            .arg(format!("--temp-dir={}", temp_dir.path().display()))
            .env("RAY_USAGE_STATS_ENABLED", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ray start");
        RayCluster {
            head,
            address: format!("127.0.0.1:{port}"),
            temp_dir,
        }
    }

    /// Runs the probe against the cluster until it answers (the head takes a few seconds).
    fn probe(&self, python: &Path, actors: usize) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let output = Command::new(python)
                .arg(python_dir().join("dspex_ray_probe.py"))
                .args([&self.address, &actors.to_string()])
                .env("RAY_USAGE_STATS_ENABLED", "0")
                .output()
                .expect("the probe runs");
            let stdout = String::from_utf8_lossy(&output.stdout);
            if output.status.success()
                && let Some(line) = stdout.lines().last()
            {
                return serde_json::from_str(line).expect("the probe's JSON");
            }
            assert!(
                Instant::now() < deadline,
                "the cluster never answered: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn session_dir(&self) -> PathBuf {
        self.temp_dir.path().to_owned()
    }
}

impl Drop for RayCluster {
    fn drop(&mut self) {
        // `ray start --block` stops what it started when it gets SIGTERM.
        support::kill(self.head.id(), libc::SIGTERM);
        let _ = self.head.wait();
    }
}

/// Set in the copy of the test that runs inside the network namespace.
const IN_NAMESPACE: &str = "DSPEX_TEST_IN_NETWORK_NAMESPACE";

/// Brings loopback up in a fresh network namespace (SIOCSIFFLAGS: IFF_UP | IFF_LOOPBACK |
/// IFF_RUNNING), then runs the command given after it.
const LOOPBACK_UP_THEN_EXEC: &str = "import fcntl, os, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fcntl.ioctl(s, 0x8914, struct.pack('16sh22x', b'lo', 0x1 | 0x8 | 0x40))
os.execv(sys.argv[1], sys.argv[1:])";

/// Runs `test` of this binary again inside a network namespace of its own; returns whether this
/// process is that copy (and should run the test's body).
fn inside_own_network_namespace(python: &Path, test: &str) -> bool {
    if std::env::var_os(IN_NAMESPACE).is_some() {
        return true;
    }
    let status = Command::new("unshare")
        .args(["--net", "--map-root-user"])
        .arg(python)
        .args(["-c", LOOPBACK_UP_THEN_EXEC])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(IN_NAMESPACE, "1")
        .status()
        .expect("unshare runs (util-linux)");
    assert!(status.success(), "the test failed in its network namespace");
    false
}

/// The network interfaces this process sees.
fn interfaces() -> Vec<String> {
    std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split(':').next()?.trim().to_owned()))
        .collect()
}

#[test]
fn a_local_ray_cluster_on_loopback_serves_actors_and_leaves_nothing_behind() {
    let environment = PythonEnvironment::resolve(&EnvironmentOptions::default().with_ray())
        .expect("the Ray environment");
    if !inside_own_network_namespace(
        environment.python(),
        "a_local_ray_cluster_on_loopback_serves_actors_and_leaves_nothing_behind",
    ) {
        return;
    }
    assert_eq!(interfaces(), ["lo"], "loopback is the only way in or out");
    assert!(
        environment.python().to_string_lossy().contains("-ray/"),
        "Ray has an environment of its own: {}",
        environment.python().display()
    );
    let cluster = RayCluster::start(environment.python());
    let answer = cluster.probe(environment.python(), 4);
    let pids = answer["pids"].as_array().unwrap();
    assert_eq!(pids.len(), 4, "{answer}");
    assert!(answer["alive"].as_u64().unwrap() >= 4, "{answer}");
    let session = cluster.session_dir();
    let needle = session.to_string_lossy().into_owned();
    assert!(
        !processes_mentioning(&needle).is_empty(),
        "the cluster's processes carry its folder"
    );
    drop(cluster);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !processes_mentioning(&needle).is_empty() {
        assert!(
            Instant::now() < deadline,
            "Ray processes left: {:?}",
            processes_mentioning(&needle)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
