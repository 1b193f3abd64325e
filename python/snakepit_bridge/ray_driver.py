"""The Ray driver: one per pool, the pool's only connection to a Ray cluster.

``python -m snakepit_bridge.ray_driver --control PATH --address ADDRESS`` connects to the cluster
(``ray.init``: a ``host:port`` of a cluster this machine is a node of, or ``ray://host:port``
through Ray Client), then listens on a Unix socket (mode 0600) for the pool's shims
(``forkshim.py``), speaking the fork server's protocol: a request (the worker's arguments and
environment, as a Python literal) with the shim's standard output and error and a lifeline pipe as
SCM_RIGHTS descriptors. For each, the driver creates a ``WorkerActor`` (``ray_worker.py``), which
starts the worker on its node; the driver answers ``remote N``, writes the worker's
``SNAKEPIT_READY <address>`` line to the shim's standard output, and later ``exit STATUS`` when
the worker or its actor ends (an actor that died, e.g. by ``ray.kill``, reads as SIGKILL). The
shim forwards its signals as ``signal N`` lines, sent on to the worker (SIGTERM: a graceful stop);
a shim that goes away (its connection closes) takes its actor along.

What reaches the cluster, and how:

- The worker's arguments (run id, worker id, imports) are the actor's arguments: nothing secret.
- Its settings (the variables named in ``SNAKEPIT_REMOTE_ENV``, API keys among them, and the
  contents of the ``SNAKEPIT_*_FILE`` files: the run token, the TLS identity, the LM settings) go
  into Ray's object store, and the actor gets a reference to them, never the values.
- ``PYTHONPATH`` (where the ``snakepit_bridge`` package and the pool's modules are) is the job's
  runtime environment, before the nodes' own ``PYTHONPATH``: on a cluster whose nodes do not
  share this machine's files, the package is installed in the nodes' image (``deploy/``).

The actors are not detached: they belong to this driver's job, so Ray ends them when the driver
exits, whatever the reason; the driver exits when its owner does (it polls its parent).

Started and supervised by the bridge like the fork server (``bridge/src/fork_server.rs``).
"""

from __future__ import annotations

import argparse
import ast
import os
import selectors
import signal
import socket
import sys
import threading
from typing import Any

MAX_FDS = 3
READY_LINE = "RAY_DRIVER_READY"
# The wait status of a process killed by SIGKILL: what an actor that died reads as.
KILLED = signal.SIGKILL


def _settings(request: dict) -> dict:
    """The worker's settings: the named variables, and the files its variables point to."""
    env: dict[str, str] = request["env"]
    names = [n for n in env.get("SNAKEPIT_REMOTE_ENV", "").split(",") if n]
    names.append("SNAKEPIT_RUN_ID")
    chosen = {name: env[name] for name in names if name in env}
    files: dict[str, bytes] = {}
    for name, value in list(chosen.items()):
        if name.startswith("SNAKEPIT_") and name.endswith("_FILE"):
            with open(value, "rb") as f:
                files[name] = f.read()
            del chosen[name]
    return {"env": chosen, "files": files}


def _actor_name(argv: list[str]) -> str:
    """``snakepit-RUN-WORKER``: how an actor is found (and its run known) on the cluster."""

    def value(flag: str) -> str:
        return argv[argv.index(flag) + 1] if flag in argv[:-1] else "?"

    return f"snakepit-{value('--run-id')}-{value('--worker-id')}"


class Driver:
    def __init__(self, args: argparse.Namespace) -> None:
        import ray

        from snakepit_bridge.ray_worker import WorkerActor

        self.ray = ray
        self.args = args
        self.actor_class = ray.remote(WorkerActor)
        self.next_id = 0
        self.lock = threading.Lock()

    def serve_shim(self, conn: socket.socket, request: dict, fds: list[int]) -> None:
        """One worker's life, from its shim's request to its exit."""
        stdout, stderr, lifeline = fds
        os.close(lifeline)
        ray = self.ray
        actor = None
        try:
            argv = list(request["argv"])
            name = _actor_name(argv)
            settings = ray.put(_settings(request))
            actor = self.actor_class.options(
                name=name,
                num_cpus=self.args.num_cpus,
                max_restarts=0,
                max_concurrency=4,
            ).remote(argv, [settings])
            try:
                address = ray.get(actor.start.remote(), timeout=self.args.start_timeout)
            except Exception as exc:  # noqa: BLE001 - any failure to start is reported alike
                os.write(stderr, f"ray driver: worker {name} did not start: {exc}\n".encode())
                conn.sendall(f"exit {1 << 8}\n".encode())
                return
            with self.lock:
                self.next_id += 1
                number = self.next_id
            conn.sendall(f"remote {number}\n".encode())
            os.write(stdout, f"SNAKEPIT_READY {address}\n".encode())
            exited = actor.wait.remote()
            done = threading.Event()
            status: list[int] = []

            def watch_exit() -> None:
                try:
                    status.append(int(ray.get(exited)))
                except Exception as exc:  # noqa: BLE001 - the actor died
                    try:
                        os.write(stderr, f"ray driver: worker {name}'s actor died: {exc}\n".encode())
                    except OSError:
                        pass
                    status.append(int(KILLED))
                done.set()
                try:
                    conn.shutdown(socket.SHUT_RD)
                except OSError:
                    pass

            threading.Thread(target=watch_exit, daemon=True).start()
            reader = conn.makefile("r")
            for line in reader:
                parts = line.split()
                if len(parts) == 2 and parts[0] == "signal" and parts[1].isdigit():
                    actor.signal.remote(int(parts[1]))
            if done.wait(timeout=0):
                try:
                    conn.sendall(f"exit {status[0]}\n".encode())
                except OSError:
                    pass
        except Exception as exc:  # noqa: BLE001 - a bad request or a lost cluster
            try:
                os.write(stderr, f"ray driver: {exc}\n".encode())
                conn.sendall(f"exit {1 << 8}\n".encode())
            except OSError:
                pass
        finally:
            # The worker ended, or its shim went away: its actor goes too.
            if actor is not None:
                try:
                    ray.kill(actor, no_restart=True)
                except Exception:  # noqa: BLE001 - already gone
                    pass
            for fd in (stdout, stderr):
                os.close(fd)
            conn.close()


def _reachable(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``address``, after checking something listens there; exits with a
    clear message when nothing does (``ray.init`` would retry for a minute)."""
    if address == "auto":
        return None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.strip("[]")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except (OSError, ValueError) as exc:
        raise SystemExit(f"ray driver: nothing answers at {address}: {exc}") from None
    return host, int(port)


def end_dead_runs(ray: Any, runs: list[str]) -> None:
    """Ends the live actors of ``runs`` (runs whose owner is dead) in this namespace: their
    driver may still hold their job (stuck, or on a machine cut off from the cluster)."""
    if not runs:
        return
    prefixes = tuple(f"snakepit-{run}-" for run in runs)
    ended = 0
    for name in ray.util.list_named_actors():
        if name.startswith(prefixes):
            try:
                ray.kill(ray.get_actor(name), no_restart=True)
                ended += 1
            except Exception as exc:  # noqa: BLE001 - gone meanwhile
                print(f"ray driver: cannot end {name}: {exc}", file=sys.stderr, flush=True)
    if ended:
        print(f"ray driver: ended {ended} actors of dead runs", file=sys.stderr, flush=True)


def _python_path(client: bool) -> str:
    """The workers' ``PYTHONPATH``: this machine's (the package, the pool's modules; paths that do
    not exist on a node are skipped by Python), before the node's own. Through Ray Client the
    node's own cannot be referred to (``${PYTHONPATH}`` makes the client's server fail to start),
    so nodes reached that way find the package through site-packages (``deploy/``)."""
    own = os.environ.get("PYTHONPATH", "")
    return own if client else f"{own}:${{PYTHONPATH}}"


def serve(args: argparse.Namespace) -> None:
    parent = os.getppid()
    where = _reachable(args.address)
    import ray

    local = {}
    client = args.address.startswith("ray://")
    if not client and where is not None and where[0] in ("127.0.0.1", "localhost", "::1"):
        # A cluster on loopback: this node's address is loopback too (Ray would otherwise learn
        # it by routing towards a public address).
        local["_node_ip_address"] = "127.0.0.1"
    # Ray Client's server for this job sometimes fails to start on the first try (seen under
    # load): try it a few times before giving up.
    for attempt in range(1, 4):
        try:
            ray.init(
                address=args.address,
                namespace=args.namespace,
                **local,
                runtime_env={"env_vars": {"PYTHONPATH": _python_path(client)}},
                log_to_driver=True,
                logging_level="WARNING",
                configure_logging=False,
            )
            break
        except ConnectionError as exc:
            if not client or attempt == 3:
                raise
            print(f"ray driver: Ray Client did not connect ({exc}); trying again",
                  file=sys.stderr, flush=True)
            ray.shutdown()
    end_dead_runs(ray, [run for run in args.dead_runs.split(",") if run])
    driver = Driver(args)
    try:
        os.unlink(args.control)
    except FileNotFoundError:
        pass
    old_umask = os.umask(0o177)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(args.control)
    os.umask(old_umask)
    listener.listen(64)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    print(READY_LINE, flush=True)
    while not stopping.is_set() and os.getppid() == parent:
        if not sel.select(timeout=0.2):
            continue
        conn, _ = listener.accept()
        conn.setblocking(True)
        try:
            message, fds, _, _ = socket.recv_fds(conn, 1 << 20, MAX_FDS)
            request = ast.literal_eval(message.decode())
            if not isinstance(request, dict) or len(fds) != MAX_FDS:
                raise ValueError("expected a mapping and three descriptors")
        except (OSError, ValueError, SyntaxError, MemoryError, RecursionError) as exc:
            print(f"ray driver: bad request: {exc}", file=sys.stderr, flush=True)
            conn.close()
            continue
        threading.Thread(
            target=driver.serve_shim, args=(conn, request, fds), daemon=True
        ).start()
    # Ray ends this job's actors when the driver disconnects.
    ray.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m snakepit_bridge.ray_driver")
    parser.add_argument("--control", required=True, help="the Unix socket to listen on")
    parser.add_argument("--address", required=True, help="the Ray cluster (host:port, ray://...)")
    parser.add_argument("--namespace", default="snakepit", help="the Ray namespace of the actors")
    parser.add_argument(
        "--num-cpus", type=float, default=0.0, help="logical CPUs Ray reserves per worker"
    )
    parser.add_argument(
        "--dead-runs", default="", help="runs (comma-separated) whose actors to end first"
    )
    parser.add_argument(
        "--start-timeout", type=float, default=120.0, help="seconds a worker may take to start"
    )
    serve(parser.parse_args(argv))


if __name__ == "__main__":
    main()
