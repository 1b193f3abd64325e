"""The Ray driver's parts that need no cluster (the whole runs against a real local cluster in
``tests/tests/ray.rs``): what it ships to a worker, how it names actors, how it ends dead runs'
actors, and the shim's side of its protocol (``remote N``, signals sent as ``signal N``)."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import scratch_dir

from snakepit_bridge import ray_driver, ray_worker

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
SHIM = PACKAGE_ROOT / "snakepit_bridge" / "forkshim.py"


def test_only_the_pools_variables_and_the_files_they_name_are_shipped():
    token = Path(scratch_dir()) / "token"
    token.write_bytes(b"s3cret-token")
    env = {
        "HOME": "/home/someone",
        "AWS_SECRET_ACCESS_KEY": "not the pool's",
        "OPENAI_API_KEY": "sk-pool",
        "SNAKEPIT_AUTH_TOKEN_FILE": str(token),
        "SNAKEPIT_RUN_ID": "r1",
        "SNAKEPIT_REMOTE_ENV": "OPENAI_API_KEY,SNAKEPIT_AUTH_TOKEN_FILE,MISSING",
    }
    settings = ray_driver._settings({"env": env, "argv": []})
    assert settings["env"] == {"OPENAI_API_KEY": "sk-pool", "SNAKEPIT_RUN_ID": "r1"}
    assert settings["files"] == {"SNAKEPIT_AUTH_TOKEN_FILE": b"s3cret-token"}


def test_actors_are_named_by_run_and_worker():
    argv = ["--run-id", "123-abc-0", "--worker-id", "2.1", "--port", "0"]
    assert ray_driver._actor_name(argv) == "snakepit-123-abc-0-2.1"
    assert ray_driver._actor_name(["--run-id"]) == "snakepit-?-?"


def test_the_jobs_python_path_keeps_the_nodes_own_except_through_ray_client(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/pkg:/mods")
    assert ray_driver._python_path(client=False) == "/pkg:/mods:${PYTHONPATH}"
    assert ray_driver._python_path(client=True) == "/pkg:/mods"


def test_wait_status_reads_as_waitpid_would():
    assert os.WIFEXITED(ray_worker.wait_status(0)) and os.WEXITSTATUS(ray_worker.wait_status(0)) == 0
    assert os.WEXITSTATUS(ray_worker.wait_status(3)) == 3
    killed = ray_worker.wait_status(-signal.SIGKILL)
    assert os.WIFSIGNALED(killed) and os.WTERMSIG(killed) == signal.SIGKILL


class FakeRay:
    """``ray.util.list_named_actors``, ``ray.get_actor`` and ``ray.kill``, recorded."""

    def __init__(self, names):
        self.names = names
        self.killed = []
        self.util = self

    def list_named_actors(self):
        return list(self.names)

    def get_actor(self, name):
        if name.endswith("gone"):
            raise ValueError(f"no actor {name}")
        return name

    def kill(self, actor, no_restart=True):
        assert no_restart
        self.killed.append(actor)


def test_a_new_driver_ends_only_the_actors_of_dead_runs(capsys):
    ray = FakeRay(
        [
            "snakepit-dead1-0.0",
            "snakepit-dead1-1.3",
            "snakepit-dead10-0.0",
            "snakepit-alive-0.0",
            "snakepit-dead2-gone",
            "someone-elses",
        ]
    )
    ray_driver.end_dead_runs(ray, ["dead1", "dead2"])
    assert ray.killed == ["snakepit-dead1-0.0", "snakepit-dead1-1.3"], "dead10 is another run"
    assert "cannot end snakepit-dead2-gone" in capsys.readouterr().err
    ray_driver.end_dead_runs(ray, [])
    assert len(ray.killed) == 2


def _catches(pid, signum):
    """Whether process ``pid`` has a handler for ``signum`` (``SigCgt`` in /proc)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def test_the_shim_of_a_remote_worker_sends_its_signals_on_and_exits_as_told():
    """A fake driver answers ``remote 7``: the shim must not signal a local pid 7, but send
    ``signal 15`` on the connection, then exit with the status the driver reports."""
    control = scratch_dir() + "/ray.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(control)
    listener.listen(1)
    heard = []

    def driver():
        conn, _ = listener.accept()
        _message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        os.write(fds[0], b"SNAKEPIT_READY tcp:10.0.0.5:4000\n")
        for fd in fds:
            os.close(fd)
        conn.sendall(b"remote 7\n")
        heard.append(conn.makefile("r").readline().strip())
        conn.sendall(f"exit {3 << 8}\n".encode())
        conn.close()

    thread = threading.Thread(target=driver, daemon=True)
    thread.start()
    shim = subprocess.Popen(
        [sys.executable, "-S", str(SHIM), control, "--", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert shim.stdout.readline().strip() == "SNAKEPIT_READY tcp:10.0.0.5:4000"
        # Once the shim catches SIGTERM (it sets its handler after reading `remote 7`).
        deadline = time.monotonic() + 30
        while not _catches(shim.pid, signal.SIGTERM):
            assert time.monotonic() < deadline, "the shim never set its SIGTERM handler"
            time.sleep(0.01)
        shim.send_signal(signal.SIGTERM)
        assert shim.wait(timeout=30) == 3, shim.stderr.read()
    finally:
        shim.kill()
        listener.close()
    thread.join(timeout=10)
    assert heard == ["signal 15"]


def test_the_shim_exits_at_once_when_the_driver_could_not_start_the_worker():
    control = scratch_dir() + "/ray.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(control)
    listener.listen(1)

    def driver():
        conn, _ = listener.accept()
        _message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        os.write(fds[1], b"ray driver: worker snakepit-r-0.0 did not start: no node\n")
        for fd in fds:
            os.close(fd)
        conn.sendall(f"exit {1 << 8}\n".encode())
        conn.close()

    thread = threading.Thread(target=driver, daemon=True)
    thread.start()
    shim = subprocess.run(
        [sys.executable, "-S", str(SHIM), control, "--", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    listener.close()
    assert shim.returncode == 1
    assert "did not start: no node" in shim.stderr
