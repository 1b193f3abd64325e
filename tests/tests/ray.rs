#![allow(missing_docs)]
//! Workers on a Ray cluster (issue 16): Ray is provisioned as an optional extra
//! (`requirements-ray.lock`, an environment of its own); the test starts a local head, runs a pool
//! of workers on it through every path (typed predictions, a compiled program, tools both ways),
//! kills an actor under load, SIGKILLs an owner, checks what Ray's state API shows, and stops the
//! head leaving no Ray process behind.
//!
//! Ray binds several of its ports to every interface whatever `--node-ip-address` says, so the
//! cluster runs in a network namespace of the test's own, where loopback is the only interface:
//! the test re-runs itself under `unshare --net --map-root-user` (after provisioning, which needs
//! the package registry).

mod support;

use std::io::{BufRead, BufReader};

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use dspex::prelude::*;
use dspex::snakepit_grpc_bridge::environment::{EnvironmentOptions, PythonEnvironment};
use dspex::snakepit_grpc_bridge::snakepit::{self, Adapter as _, PoolError};
use dspex::snakepit_grpc_bridge::{BridgeError, args};
use dspex::{Error, Lm};
use dspex_tests::rag::{Rag, exact};
use dspex_tests::ray_cluster::{
    RayCluster, free_port, inside_own_network_namespace, interfaces, processes_mentioning,
};
use support::{QA, alive, ask, eventually, python_dir, raw_ping, run};

/// The rule LM of the examples (`dspex_rule_lm.RuleLM`), answering after `delay_ms`.
fn rule_lm(delay_ms: i64) -> Lm {
    let mut kwargs = dspex::__private::Map::new();
    kwargs.insert("delay_ms".into(), delay_ms.into());
    Lm::custom("dspex_rule_lm.RuleLM", kwargs)
}

/// An API key for the workers; it must reach them and show nowhere on the cluster.
const SECRET_NAME: &str = "DSPEX_RAY_TEST_API_KEY";
const SECRET: &str = "sk-ray-test-5b0c1e0d9f7a4e21a3c6b8d2f1e4a7c9";

/// The parent's command line of process `pid`.
fn parent_command(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ppid: u32 = stat
        .rsplit_once(") ")
        .unwrap()
        .1
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let cmdline = std::fs::read(format!("/proc/{ppid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmdline).replace('\0', " ")
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A frame: u32 length (id, code and payload), u64 id, u8 method or status, payload.
fn frame(id: u64, code: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = ((payload.len() + 9) as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&id.to_le_bytes());
    out.push(code);
    out.extend_from_slice(payload);
    out
}

/// What a fast-path connection answers to `first` then a frame of an unknown method: the bytes
/// it sent before it closed (within 10 s), or its first `enough` bytes.
async fn fast_path_answer(
    stream: impl AsyncRead + AsyncWrite + Unpin,
    first: &[u8],
    enough: usize,
) -> Vec<u8> {
    let mut stream = stream;
    let mut request = first.to_vec();
    request.extend(frame(9, 99, b""));
    if stream.write_all(&request).await.is_err() {
        return Vec::new();
    }
    let _ = stream.flush().await;
    let mut answer = vec![0u8; enough];
    let mut read = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while read < answer.len() {
        match tokio::time::timeout_at(deadline, stream.read(&mut answer[read..])).await {
            Ok(Ok(n)) if n > 0 => read += n,
            _ => break,
        }
    }
    answer.truncate(read);
    answer
}

/// The worker's fast path on TCP answers only over TLS, and only after the run's token: a
/// client without TLS, or with TLS but no token, is closed on unanswered.
async fn fast_path_refuses_strangers(host_port: &str, ca_pem: &[u8], token: &str) {
    use tokio_rustls::rustls;
    const AUTHENTICATE: u8 = 4;
    const RUN_MODULE: u8 = 1;
    // Plaintext, even with the token: the TLS server reads no frame of it.
    let plain = tokio::net::TcpStream::connect(host_port).await.unwrap();
    let answer = fast_path_answer(plain, &frame(1, AUTHENTICATE, token.as_bytes()), 4096).await;
    assert!(
        !answer.windows(9).any(|w| w == [1, 0, 0, 0, 0, 0, 0, 0, 0]),
        "plaintext got a frame: {answer:?}"
    );
    let tls = || async {
        let mut roots = rustls::RootCertStore::empty();
        for cert in
            <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(
                ca_pem,
            )
        {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(host_port).await.unwrap();
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap()
    };
    // TLS, but a call first: closed unanswered.
    let call = frame(1, RUN_MODULE, b"");
    assert_eq!(
        fast_path_answer(tls().await, &call, 4096).await,
        Vec::<u8>::new()
    );
    // TLS and a wrong token: closed unanswered.
    let wrong = frame(1, AUTHENTICATE, &[b'0'; 64]);
    assert_eq!(
        fast_path_answer(tls().await, &wrong, 4096).await,
        Vec::<u8>::new()
    );
    // The control: TLS and the token are acknowledged (id 1, STATUS_OK), then served.
    let right = frame(1, AUTHENTICATE, token.as_bytes());
    let mut expected = frame(1, 0, b"");
    expected.extend(frame(9, 1, b"unknown method 99"));
    let answer = fast_path_answer(tls().await, &right, expected.len()).await;
    assert_eq!(answer, expected);
}

/// Four workers on Ray serve typed predictions, a compiled program and tools; the API key
/// reaches them and shows nowhere in Ray's state API; they refuse clients without the token or
/// without TLS; a killed actor's calls fail typed and the pool replaces it; shutdown ends every
/// actor.
async fn a_pool_on_ray(cluster: &RayCluster, python: &Path) {
    let started = Instant::now();
    let dspex = support::example_lm_builder(rule_lm(0), 4)
        .python_path(python_dir())
        .import("dspex_secret_tools")
        .ray(cluster.address.as_str())
        .bridge(|b| b.secret_env(SECRET_NAME, SECRET))
        .start()
        .await
        .expect("workers on Ray start");
    eprintln!("4 workers on Ray ready after {:?}", started.elapsed());
    let bridge = dspex.bridge();
    let run_id = bridge.pool().run_id().to_owned();
    let prefix = format!("snakepit-{run_id}-");
    let actors = cluster.alive_actors(python, &prefix);
    assert_eq!(
        actors,
        (0..4)
            .map(|slot| format!("{prefix}{slot}.0"))
            .collect::<Vec<_>>(),
        "one actor per slot"
    );
    // Each worker is a child of a Ray actor's process, not of this one.
    let worker = bridge.ping().await.unwrap();
    let parent = parent_command(worker.pid);
    assert!(
        parent.contains("WorkerActor"),
        "worker {} runs under {parent:?}",
        worker.pid
    );

    // Typed predictions, spread over the workers.
    let qa = Predict::<QA>::new(&dspex);
    let answers = futures_util::future::join_all((0..24).map(|i| qa.call(ask(i)))).await;
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer.unwrap().answer, format!("a{i}"));
    }

    // A compiled program: the optimiser runs in a worker on Ray and calls the Rust program and
    // metric back (tools, worker to owner); the compiled program runs on every worker.
    let rag = Rag::new(&dspex);
    let trainset: Vec<_> = (0..4)
        .map(|i| dspex_tests::rag::example("q", i, &format!("a{i}")))
        .collect();
    let compiled = BootstrapFewShot::new(exact)
        .max_bootstrapped_demos(4)
        .max_labeled_demos(0)
        .compile(&rag, &trainset)
        .await
        .expect("compiled on Ray");
    assert_eq!(compiled.predictors()[0].1.demos().len(), 4);
    let outputs = futures_util::future::join_all((0..8).map(|i| {
        compiled.forward(dspex_tests::rag::RewriteInput {
            question: format!("<z{i}>"),
        })
    }))
    .await;
    for (i, output) in outputs.into_iter().enumerate() {
        assert_eq!(output.unwrap().answer, format!("a{i}"));
    }

    // The API key reached the workers (a Python tool hashes what it sees)...
    let session = bridge.create_session().await.unwrap();
    let digest = session
        .call_tool("secret_digest", args([("name", SECRET_NAME)]))
        .await
        .unwrap();
    assert_eq!(digest.as_str(), Some(sha256_hex(SECRET).as_str()));
    session.close().await.unwrap();
    // ...and shows nowhere in what Ray's state API and dashboard show: actors, tasks, jobs,
    // objects, workers, nodes, the actors' logs. Nor does the run's token.
    let shown = cluster.state(python, &["dump"])["shown"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(shown.contains(&prefix), "the dump shows this run's actors");
    assert!(shown.contains("WorkerActor"));
    let token =
        std::fs::read_to_string(bridge.pool().adapter().socket_dir().join("token")).unwrap();
    assert!(
        !shown.contains(SECRET),
        "the API key shows in Ray's state API"
    );
    assert!(
        !shown.contains(token.trim()),
        "the run token shows in Ray's state API"
    );

    // Reachable only over TLS with the run's token.
    let checkout = bridge.pool().checkout().await.unwrap();
    let host_port = checkout
        .connection()
        .address()
        .strip_prefix("tcp:")
        .expect("a TCP address")
        .to_owned();
    // DSPy calls go over the worker's fast path: TCP, TLS, the token first.
    let fast = checkout
        .connection()
        .fast_path_address()
        .and_then(|a| a.strip_prefix("tcp:"))
        .expect("a fast path on TCP")
        .to_owned();
    let cert = std::fs::read(bridge.pool().adapter().socket_dir().join("tls.crt")).unwrap();
    fast_path_refuses_strangers(&fast, &cert, token.trim()).await;
    // max_memory recycling reads the worker's own memory, which its ping reports.
    let pid = checkout.connection().pid();
    let reported = bridge
        .pool()
        .adapter()
        .resident_bytes(checkout.connection(), 0)
        .await
        .expect("the worker reports its memory");
    let here = snakepit::resident_bytes(pid).unwrap();
    assert!(
        reported > 50 << 20 && reported.abs_diff(here) < 20 << 20,
        "reported {reported} bytes, /proc says {here}"
    );
    drop(checkout);
    let bearer = format!("Bearer {}", token.trim());
    if let Ok(plaintext) = tonic::transport::Endpoint::try_from(format!("http://{host_port}"))
        .unwrap()
        .connect()
        .await
    {
        assert!(
            raw_ping(plaintext, Some(&bearer)).await.is_err(),
            "plaintext with the token is refused"
        );
    }
    let channel = support::tls_channel(&host_port, &cert).await;
    let refused = raw_ping(channel.clone(), None).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused}");
    // The control: with the token, over TLS, it answers.
    raw_ping(channel, Some(&bearer)).await.unwrap();

    // ray.kill of an actor under load: its calls fail with a typed crash, the others finish, the
    // session bound to it is lost, and the pool starts a replacement on the cluster.
    let session = bridge.create_session().await.unwrap();
    let slot = bridge
        .pool()
        .session_worker(session.id())
        .expect("the session's worker")
        .slot;
    // An LM that waits 8 s on DSPy's async path (the worker keeps answering health checks).
    let slow = Arc::new(dspex::CallOptions::default().lm(support::faulty_lm(
        support::numbered_answers(8),
        &[("delay_ms", dspex::Value::from(8000.0))],
    )));
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let qa = qa.clone();
            let slow = slow.clone();
            tokio::spawn(async move {
                let result = qa.call_with(ask(i), &slow).await;
                (result, Instant::now())
            })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(10), || bridge.pool().stats().in_flight
            == 8)
        .await,
        "8 calls in flight"
    );
    let victim = format!("{prefix}{slot}.0");
    let killed_at = Instant::now();
    cluster.state(python, &["kill", &victim]);
    let mut crashed = 0;
    let mut answered = 0;
    let mut crash_seen = None;
    for (i, call) in calls.into_iter().enumerate() {
        let (result, finished) = call.await.unwrap();
        if result.is_err() {
            let after = finished.duration_since(killed_at);
            crash_seen = Some(crash_seen.map_or(after, |seen: Duration| seen.min(after)));
        }
        match result {
            Ok(output) => {
                assert_eq!(output.answer, format!("a{i}"));
                answered += 1;
            }
            Err(Error::Bridge(BridgeError::Pool(PoolError::WorkerCrashed { worker, exit }))) => {
                assert_eq!(
                    worker.slot, slot,
                    "only the killed slot's calls fail: {worker} {exit:?}"
                );
                assert!(
                    exit.signal() == Some(9),
                    "an actor that died reads as SIGKILL: {exit:?}"
                );
                crashed += 1;
            }
            Err(other) => panic!("call {i}: not a typed crash: {other:?}"),
        }
    }
    eprintln!(
        "ray.kill under load: {crashed} of 8 calls got WorkerCrashed (the first \
         {crash_seen:?} after the kill began, the helper's own start included), {answered} answered"
    );
    assert!(
        crashed >= 1 && answered >= 1,
        "{crashed} crashed, {answered} answered"
    );
    let lost = session
        .call_tool("secret_digest", args([("name", SECRET_NAME)]))
        .await
        .unwrap_err();
    assert!(
        matches!(lost, BridgeError::Pool(PoolError::SessionWorkerLost { .. })),
        "the session went with its worker: {lost:?}"
    );
    let replaced = cluster.await_alive_actors(python, &format!("{prefix}{slot}.1"), 1);
    assert!(
        eventually(Duration::from_secs(60), || bridge
            .pool()
            .workers()
            .iter()
            .all(|w| w.ready))
        .await
    );
    eprintln!("the replacement actor was alive {replaced:?} after the crash was seen");
    assert!(bridge.pool().stats().restarts >= 1);
    assert!(cluster.alive_actors(python, &victim).is_empty());
    let again = futures_util::future::join_all((0..8).map(|i| qa.call(ask(i)))).await;
    assert!(
        again.into_iter().all(|a| a.is_ok()),
        "the pool serves again"
    );

    // The Ray driver SIGKILLed: Ray ends its job's actors, the bridge starts a new driver, and
    // the pool replaces every worker through it.
    let first_driver = bridge
        .pool()
        .adapter()
        .ray_driver_pid()
        .expect("a Ray driver");
    let generations: Vec<u64> = bridge
        .pool()
        .workers()
        .iter()
        .map(|w| w.id.generation)
        .collect();
    let killed_at = Instant::now();
    support::kill(first_driver, libc::SIGKILL);
    assert!(
        eventually(Duration::from_secs(90), || {
            let workers = bridge.pool().workers();
            bridge
                .pool()
                .adapter()
                .ray_driver_pid()
                .is_some_and(|pid| pid != first_driver)
                && workers
                    .iter()
                    .zip(&generations)
                    .all(|(w, before)| w.ready && w.id.generation > *before)
        })
        .await,
        "every worker replaced through a new driver: {:?}",
        bridge.pool().workers()
    );
    eprintln!(
        "Ray driver SIGKILLed: 4 workers replaced through a new driver after {:?}",
        killed_at.elapsed()
    );
    let again = futures_util::future::join_all((0..8).map(|i| qa.call(ask(i)))).await;
    assert!(
        again.into_iter().all(|a| a.is_ok()),
        "the pool serves again"
    );
    assert_eq!(
        cluster.alive_actors(python, &prefix).len(),
        4,
        "the first driver's actors ended"
    );

    // Graceful shutdown ends every actor of the run, and the driver.
    let driver = bridge
        .pool()
        .adapter()
        .ray_driver_pid()
        .expect("a Ray driver");
    dspex.shutdown().await.unwrap();
    let ended = cluster.await_alive_actors(python, &prefix, 0);
    eprintln!("shutdown: no actor of the run alive after {ended:?}");
    assert!(
        eventually(Duration::from_secs(10), || !alive(driver)).await,
        "the Ray driver stopped"
    );
}

/// Starts `bridge-owner` with two workers on the cluster; the process and its run id.
fn start_owner(cluster: &RayCluster, runtime: &Path) -> (Child, String) {
    let mut owner = Command::new(env!("CARGO_BIN_EXE_bridge-owner"))
        .arg(runtime)
        .arg(format!("ray:{}", cluster.address))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(owner.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let run_id = line
        .strip_prefix("READY ")
        .unwrap_or_else(|| panic!("the owner did not start: {line:?}"))
        .trim()
        .to_owned();
    (owner, run_id)
}

/// SIGKILL of an owner leaves no actor of its run alive on the cluster, and no process here;
/// also when its Ray driver is SIGKILLed with it (as when the owner's machine goes), which
/// leaves only Ray's own rule to end the actors: they belong to the driver's job.
fn an_owner_killed_leaves_no_actor(cluster: &RayCluster, python: &Path) {
    let runtime = tempfile::tempdir().unwrap();
    for with_driver in [false, true] {
        let (mut owner, run_id) = start_owner(cluster, runtime.path());
        let prefix = format!("snakepit-{run_id}-");
        assert_eq!(cluster.alive_actors(python, &prefix).len(), 2);
        let local = snakepit::processes_of_run(&run_id);
        let killed = Instant::now();
        if with_driver {
            let driver = processes_mentioning("snakepit_bridge.ray_driver")
                .into_iter()
                .find(|pid| local.contains(pid))
                .expect("the owner's Ray driver");
            support::kill(driver, libc::SIGKILL);
        }
        support::kill(owner.id(), libc::SIGKILL);
        owner.wait().unwrap();
        cluster.await_alive_actors(python, &prefix, 0);
        let ended = killed.elapsed();
        eprintln!(
            "owner SIGKILLed{}: no actor of its run alive after {ended:?}",
            if with_driver {
                " with its Ray driver"
            } else {
                ""
            }
        );
        assert!(ended < Duration::from_secs(30), "{ended:?}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while local.iter().any(|&pid| alive(pid)) {
            assert!(Instant::now() < deadline, "processes of the run left");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // Actors of a run whose owner is dead but which Ray keeps (here: detached, as a driver on a
    // machine cut off from the cluster would leave them for a while): a new pool with the same
    // registry ends them when it starts, as it kills the local processes of dead runs.
    let dead_owner = {
        let mut child = Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        child.id()
    };
    let dead_run = format!("{dead_owner}-deadbeef-0");
    let runs = runtime.path().join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    std::fs::write(
        runs.join(format!("{dead_run}.json")),
        serde_json::json!({
            "run_id": dead_run, "owner_pid": dead_owner, "owner_start_time": null, "workers": []
        })
        .to_string(),
    )
    .unwrap();
    let prefix = format!("snakepit-{dead_run}-");
    cluster.state(python, &["detached", &format!("{prefix}0.0")]);
    std::thread::sleep(Duration::from_secs(2)); // the control: it lives on by itself
    assert_eq!(cluster.alive_actors(python, &prefix).len(), 1);
    let started = Instant::now();
    let (mut next, next_run) = start_owner(cluster, runtime.path());
    cluster.await_alive_actors(python, &prefix, 0);
    eprintln!(
        "a new pool ended the actors of a dead run {:?} after it was asked to start",
        started.elapsed()
    );
    support::kill(next.id(), libc::SIGKILL);
    next.wait().unwrap();
    cluster.await_alive_actors(python, &format!("snakepit-{next_run}-"), 0);
}

/// Through Ray Client (`ray://`, as a service outside the cluster connects): a worker serves a
/// typed prediction, and shutdown ends its actor.
async fn a_pool_through_ray_client(cluster: &RayCluster, python: &Path) {
    let dspex = support::example_lm_builder(rule_lm(0), 1)
        .ray(cluster.client_address.as_str())
        .start()
        .await
        .expect("a worker through Ray Client");
    let answer = Predict::<QA>::new(&dspex).call(ask(7)).await.unwrap();
    assert_eq!(answer.answer, "a7");
    let prefix = format!("snakepit-{}-", dspex.bridge().pool().run_id());
    assert_eq!(cluster.alive_actors(python, &prefix).len(), 1);
    dspex.shutdown().await.unwrap();
    cluster.await_alive_actors(python, &prefix, 0);
}

/// Bad placements fail at once with a typed error; a cluster that is not there fails start-up
/// with the driver's reason, leaving nothing behind.
async fn bad_placements_fail_typed() {
    for address in ["", "localhost", "http://127.0.0.1:6379"] {
        let result = Dspex::builder().ray(address).start().await;
        assert!(
            matches!(&result, Err(Error::Bridge(BridgeError::Ray { .. }))),
            "{address:?}: {:?}",
            result.err()
        );
    }
    let nobody = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let result = Dspex::builder()
        .ray(nobody.as_str())
        .bridge(|b| b.pool(|p| p.startup_timeout(Duration::from_secs(30))))
        .start()
        .await;
    let Err(Error::Bridge(BridgeError::Ray { address, message })) = result else {
        panic!("no cluster at {nobody}: {:?}", result.err());
    };
    eprintln!(
        "no cluster: failed after {:?}: {message}",
        started.elapsed()
    );
    assert_eq!(address, nobody);
    assert!(!message.is_empty());
    assert!(processes_mentioning("snakepit_bridge.ray_driver").is_empty());
}

#[test]
fn workers_on_a_local_ray_cluster_are_served_supervised_and_leave_nothing_behind() {
    const TEST: &str =
        "workers_on_a_local_ray_cluster_are_served_supervised_and_leave_nothing_behind";
    let environment = PythonEnvironment::resolve(&EnvironmentOptions::default().with_ray())
        .expect("the Ray environment");
    let args = ["--exact", TEST, "--nocapture", "--test-threads=1"].map(Into::into);
    if !inside_own_network_namespace(environment.python(), &args) {
        return;
    }
    assert_eq!(interfaces(), ["lo"], "loopback is the only way in or out");
    let python = environment.python();
    assert!(
        python.to_string_lossy().contains("-ray/"),
        "Ray has an environment of its own: {}",
        python.display()
    );
    let cluster = RayCluster::start(python);
    let answer = cluster.probe(python, 4);
    assert_eq!(answer["pids"].as_array().unwrap().len(), 4, "{answer}");
    run(a_pool_on_ray(&cluster, python));
    an_owner_killed_leaves_no_actor(&cluster, python);
    run(a_pool_through_ray_client(&cluster, python));
    run(bad_placements_fail_typed());

    let needle = cluster.session_dir().to_string_lossy().into_owned();
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
