"""The fork server: imports DSPy and gRPC once, then forks workers on request.

``python -m snakepit_bridge.forkserver --control PATH`` listens on a Unix socket (mode 0600). A
worker is asked for by ``forkshim.py``, the small process the pool starts and supervises: it sends
its standard output and error and a lifeline pipe (SCM_RIGHTS), the worker's arguments, environment
and working directory. The fork server forks; the child takes those descriptors and runs
``snakepit_bridge.server``; it dies with the shim (lifeline EOF) or with the fork server
(parent-death signal). The fork server reaps the child and reports its exit status to the shim,
and SIGKILLs the child as soon as its shim's connection closes: a worker that cannot read its
lifeline (stopped by SIGSTOP, or stuck with the GIL held) still dies with its shim.

No gRPC object exists before a fork (gRPC's fork rule): only modules are imported.
"""

from __future__ import annotations

import argparse
import ast
import ctypes
import gc
import importlib
import os
import selectors
import signal
import socket
import sys
import threading

MAX_FDS = 3


def die_with_parent() -> None:
    """In a child (before exec, or after fork): SIGKILL when the parent dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _run_child(
    request: dict,
    fds: list[int],
    listener: socket.socket,
    conns: list[socket.socket],
    inherited: list[int],
) -> None:
    """In the forked child: become a worker. Never returns."""
    code = 1
    try:
        listener.close()
        for c in conns:
            c.close()
        # The fork server's own descriptors (its signal wake-up pipe, its selector's epoll) are
        # nothing of the worker's: a worker writing to the wake-up pipe would wake the server.
        signal.set_wakeup_fd(-1)
        for fd in inherited:
            try:
                os.close(fd)
            except OSError:
                pass
        die_with_parent()
        stdout, stderr, lifeline = fds
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(stdout, 1)
        os.dup2(stderr, 2)
        for fd in (devnull, stdout, stderr):
            if fd > 2:
                os.close(fd)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request.get("cwd") or "/")
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)

        def watch_lifeline() -> None:
            try:
                while os.read(lifeline, 1):
                    pass
            except OSError:
                pass
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=watch_lifeline, daemon=True).start()
        from snakepit_bridge import server

        server.main(request["argv"])
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


# What a worker imports only when it first needs it. Imported here, once, instead of in every
# worker: a worker forked before had to compile these (~17 ms each time, without bytecode caches).
PRELOAD = (
    "grpc.aio",
    "snakepit_bridge.definitions",
    "snakepit_bridge.event_loop",
    "snakepit_bridge.fastpath",
    "snakepit_bridge.field_types",
    "snakepit_bridge.instance",
    "snakepit_bridge.lm",
    "snakepit_bridge.prediction",
    "snakepit_bridge.signature",
    "snakepit_bridge.threads",
    "dspy.utils.dummies",
    "pydantic",
)


def serve(control: str) -> None:
    # Import what every worker needs, once, before any fork.
    import dspy  # noqa: F401
    import grpc  # noqa: F401

    from snakepit_bridge import server  # noqa: F401

    for module in PRELOAD:
        importlib.import_module(module)

    # Everything imported so far lives as long as the workers: move it out of the garbage
    # collector's reach, so a worker's collections never write to (and so copy) the pages it
    # shares with this process.
    gc.collect()
    gc.freeze()

    try:
        os.unlink(control)
    except FileNotFoundError:
        pass
    old_umask = os.umask(0o177)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(control)
    os.umask(old_umask)
    listener.listen(64)
    listener.setblocking(False)

    children: dict[int, socket.socket] = {}
    conns: list[socket.socket] = []
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sel.register(wake_r, selectors.EVENT_READ)
    parent = os.getppid()
    print("FORKSERVER_READY", flush=True)

    while not stopping:
        for key, _ in sel.select(timeout=1.0):
            if key.fileobj is wake_r:
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    pass
            elif isinstance(key.data, int):
                # A shim's connection: it never writes after its request, so this is EOF.
                child, conn = key.data, key.fileobj
                try:
                    more = conn.recv(64)
                except OSError:
                    more = b""
                if not more:
                    sel.unregister(conn)
                    try:
                        os.kill(child, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            elif key.fileobj is listener:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(True)
                try:
                    message, fds, _, _ = socket.recv_fds(conn, 1 << 20, MAX_FDS)
                    request = ast.literal_eval(message.decode())
                    if not isinstance(request, dict):
                        raise ValueError("the request is not a mapping")
                    if len(fds) != MAX_FDS:
                        raise ValueError(f"expected {MAX_FDS} descriptors, got {len(fds)}")
                except (OSError, ValueError, SyntaxError, MemoryError, RecursionError) as exc:
                    print(f"forkserver: bad request: {exc}", file=sys.stderr, flush=True)
                    conn.close()
                    continue
                conns.append(conn)
                pid = os.fork()
                if pid == 0:
                    _run_child(request, fds, listener, conns, [wake_r, wake_w, sel.fileno()])
                for fd in fds:
                    os.close(fd)
                children[pid] = conn
                try:
                    conn.sendall(f"pid {pid}\n".encode())
                except OSError:
                    pass
                sel.register(conn, selectors.EVENT_READ, data=pid)
        # Reap every child that exited and tell its shim how.
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            conn = children.pop(pid, None)
            if conn is not None:
                if conn.fileno() >= 0 and conn.fileno() in sel.get_map():
                    sel.unregister(conn)
                try:
                    conn.sendall(f"exit {status}\n".encode())
                except OSError:
                    pass
                conn.close()
                if conn in conns:
                    conns.remove(conn)
        if os.getppid() != parent:
            break
    for pid in list(children):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m snakepit_bridge.forkserver")
    parser.add_argument("--control", required=True, help="the Unix socket to listen on")
    args = parser.parse_args()
    serve(args.control)


if __name__ == "__main__":
    main()
