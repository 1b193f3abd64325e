//! A local Ray cluster for the Ray placement tests and the bench's Ray group: a head on loopback
//! (`ray start --head --block`), started and stopped by its user, and the way to run inside a
//! network namespace of one's own (Ray binds some of its ports to every interface whatever
//! `--node-ip-address` says, so the cluster runs where loopback is the only interface).

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The test Python modules (`tests/tests/python`): the Ray probe and state helpers.
fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

/// Whether `pid` is a live process (not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
    })
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
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

/// A Ray head on loopback, started by a test or the bench (`ray start --head --block`) and stopped with it.
pub struct RayCluster {
    head: Child,
    /// The cluster's address (`127.0.0.1:PORT`), for `ray.init` and `RayPlacement`.
    pub address: String,
    /// Its Ray Client address (`ray://127.0.0.1:PORT`).
    pub client_address: String,
    temp_dir: tempfile::TempDir,
}

impl RayCluster {
    /// Starts a head with 2 CPUs and the dashboard (for the state API), on free loopback ports,
    /// with `python`'s `ray`. It answers a few seconds later: see [`probe`](Self::probe).
    pub fn start(python: &Path) -> RayCluster {
        let ray = python.with_file_name("ray");
        // Ray's session folders live under a short path (its Unix sockets have a length limit).
        let temp_dir = tempfile::Builder::new()
            .prefix("ray")
            .tempdir_in("/tmp")
            .unwrap();
        let port = free_port();
        let client_port = free_port();
        let head = Command::new(&ray)
            .args(["start", "--head", "--block", "--disable-usage-stats"])
            .args(["--node-ip-address", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(["--ray-client-server-port", &client_port.to_string()])
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
            client_address: format!("ray://127.0.0.1:{client_port}"),
            temp_dir,
        }
    }

    /// Runs the probe against the cluster until it answers (the head takes a few seconds).
    pub fn probe(&self, python: &Path, actors: usize) -> serde_json::Value {
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

    /// The head's temporary folder: every process of the cluster names it.
    pub fn session_dir(&self) -> PathBuf {
        self.temp_dir.path().to_owned()
    }

    /// What Ray's state API says (`tests/tests/python/dspex_ray_state.py`).
    pub fn state(&self, python: &Path, args: &[&str]) -> serde_json::Value {
        let output = Command::new(python)
            .arg(python_dir().join("dspex_ray_state.py"))
            .arg(&self.address)
            .args(args)
            .env("RAY_USAGE_STATS_ENABLED", "0")
            .output()
            .expect("the state helper runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("its JSON")
    }

    /// The live actors whose names start with `prefix`.
    pub fn alive_actors(&self, python: &Path, prefix: &str) -> Vec<String> {
        self.state(python, &["alive", prefix])["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_owned())
            .collect()
    }

    /// Waits until the live actors starting with `prefix` are `count`; how long that took.
    pub fn await_alive_actors(&self, python: &Path, prefix: &str, count: usize) -> Duration {
        let started = Instant::now();
        loop {
            let names = self.alive_actors(python, prefix);
            if names.len() == count {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "expected {count} live actors {prefix}*, still {names:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for RayCluster {
    fn drop(&mut self) {
        // `ray start --block` stops what it started when it gets SIGTERM.
        // SAFETY: kill(2) of our own child; no memory is involved.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.head.id() as i32, libc::SIGTERM);
        }
        let _ = self.head.wait();
    }
}

/// Set in the copy of the test that runs inside the network namespace.
pub const IN_NAMESPACE: &str = "DSPEX_TEST_IN_NETWORK_NAMESPACE";

/// Brings loopback up in a fresh network namespace (SIOCSIFFLAGS: IFF_UP | IFF_LOOPBACK |
/// IFF_RUNNING), then runs the command given after it.
const LOOPBACK_UP_THEN_EXEC: &str = "import fcntl, os, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fcntl.ioctl(s, 0x8914, struct.pack('16sh22x', b'lo', 0x1 | 0x8 | 0x40))
os.execv(sys.argv[1], sys.argv[1:])";

/// Runs this program again, with `args`, inside a network namespace of its own where loopback is
/// the only interface (`unshare --net --map-root-user`; loopback brought up by `python`); returns
/// whether this process is that copy (and should do the work), after checking that the copy
/// succeeded when it is not.
pub fn inside_own_network_namespace(python: &Path, args: &[OsString]) -> bool {
    if std::env::var_os(IN_NAMESPACE).is_some() {
        return true;
    }
    let status = Command::new("unshare")
        .args(["--net", "--map-root-user"])
        .arg(python)
        .args(["-c", LOOPBACK_UP_THEN_EXEC])
        .arg(std::env::current_exe().unwrap())
        .args(args)
        .env(IN_NAMESPACE, "1")
        .status()
        .expect("unshare runs (util-linux)");
    assert!(
        status.success(),
        "the run in its own network namespace failed"
    );
    false
}

/// The network interfaces this process sees.
pub fn interfaces() -> Vec<String> {
    std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split(':').next()?.trim().to_owned()))
        .collect()
}
