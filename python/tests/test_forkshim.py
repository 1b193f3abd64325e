"""The shim and the fork server, as real processes: the request crosses (a Python literal and
three descriptors), the worker's exit status comes back as the shim's own."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import scratch_dir

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
SHIM = PACKAGE_ROOT / "snakepit_bridge" / "forkshim.py"


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE_ROOT), *sys.path]))


def _run_shim(control, *argv, env=None):
    return subprocess.run(
        [sys.executable, "-S", str(SHIM), control, "--", *argv],
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _start_fork_server(control):
    server = subprocess.Popen(
        [sys.executable, "-m", "snakepit_bridge.forkserver", "--control", control],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stdout.readline().strip() == "FORKSERVER_READY"
    return server


def test_a_worker_started_through_the_shim_exits_as_the_shim():
    control = scratch_dir() + "/fork.sock"
    server = _start_fork_server(control)
    try:
        # The worker refuses these arguments (argparse exits with status 2, saying why on the
        # standard error the shim handed over).
        shim = _run_shim(control, "--socket", "x", "--no-such-flag")
        assert shim.returncode == 2, shim.stderr
        assert "--no-such-flag" in shim.stderr
        assert "unrecognized arguments" in shim.stderr
        # A malformed request is refused and the fork server keeps serving.
        bad = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        bad.connect(control)
        bad.sendall(b"{'argv': [")
        bad.shutdown(socket.SHUT_WR)
        assert bad.recv(64) == b"", "closed without a worker"
        bad.close()
        again = _run_shim(control, "--socket", "x", "--no-such-flag")
        assert again.returncode == 2, again.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_shim_waits_for_no_fork_server_when_told_it_is_gone():
    control = scratch_dir() + "/fork.sock"
    Path(control).with_suffix(".gone").touch()
    started = time.monotonic()
    shim = _run_shim(control, "x", env=dict(_env(), SNAKEPIT_FORK_WAIT="60"))
    assert shim.returncode == 70
    assert "no fork server" in shim.stderr
    assert time.monotonic() - started < 30
