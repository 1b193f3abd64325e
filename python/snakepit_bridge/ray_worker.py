"""A pool worker hosted by a Ray actor.

``WorkerActor`` runs on a node of the cluster. ``start`` fetches the worker's settings (the run
token, the TLS identity, the LM settings, the pool's environment variables, API keys among them)
from Ray's object store, writes the files among them into a private (0700) directory of its own,
starts ``python -m snakepit_bridge.server`` on the node's address (TCP, TLS, the run token), and
returns the address it serves on. The server reads its files before it says it is ready; the
actor then deletes them, so no secret stays on the node's disk.

The settings travel as an object reference inside a list (``[ref]``): Ray hands the reference,
not the value, to the actor's constructor, so the secrets are never part of the actor's creation
task, which the cluster's control store keeps and its state API and dashboard describe.

The server is the actor's child: it dies with the actor (parent-death signal; it also polls its
parent). ``wait`` returns when the server exits, with its wait status; the Ray driver
(``ray_driver.py``) reports it to the pool's shim.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from typing import Any

from snakepit_bridge.forkserver import die_with_parent

READY_PREFIX = "SNAKEPIT_READY "


def wait_status(returncode: int) -> int:
    """A ``Popen`` return code as a wait status (what ``os.waitpid`` would have said)."""
    return -returncode if returncode < 0 else (returncode & 0xFF) << 8


class WorkerActor:
    """One pool worker on the cluster: the actor and its server process."""

    def __init__(self, argv: list[str], settings: list[Any]) -> None:
        self._argv = list(argv)
        self._settings = settings
        self._process: subprocess.Popen[str] | None = None
        self._exited = threading.Event()

    def start(self) -> str:
        """Starts the server; returns its address (``tcp:HOST:PORT``)."""
        import ray

        settings = ray.get(self._settings[0])
        private = tempfile.mkdtemp(prefix="snakepit-worker-")
        try:
            env = dict(os.environ)
            env.update(settings["env"])
            for name, contents in settings["files"].items():
                path = os.path.join(private, name.lower())
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(contents)
                env[name] = path
            host = ray.util.get_node_ip_address()
            argv = [sys.executable, "-m", "snakepit_bridge.server", *self._argv, "--host", host]
            self._process = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                text=True,
                preexec_fn=die_with_parent,
            )
            address = None
            assert self._process.stdout is not None
            for line in self._process.stdout:
                if line.startswith(READY_PREFIX):
                    address = line[len(READY_PREFIX):].strip()
                    break
                print(line, end="", flush=True)
            if address is None:
                status = self._process.wait()
                raise RuntimeError(f"the worker exited before it was ready (return code {status})")
        finally:
            # The server has read its files by the time it is ready (or it is gone).
            shutil.rmtree(private, ignore_errors=True)
        threading.Thread(target=self._relay_output, daemon=True).start()
        return address

    def _relay_output(self) -> None:
        """The server's standard output, into the actor's log."""
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            print(line, end="", flush=True)

    def pid(self) -> int:
        """The server's process id."""
        return self._process.pid if self._process else 0

    def wait(self) -> int:
        """Blocks until the server exits; its wait status."""
        if self._process is None:
            return wait_status(1)
        return wait_status(self._process.wait())

    def signal(self, signum: int) -> None:
        """Sends ``signum`` to the server (SIGTERM: a graceful stop)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signum)
