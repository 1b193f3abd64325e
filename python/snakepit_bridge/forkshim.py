"""The process the pool starts and supervises when workers come from the fork server.

``python -S forkshim.py CONTROL_SOCKET -- SERVER_ARGS...``: asks the fork server for a worker,
handing it this process's standard output and error and a lifeline pipe; forwards SIGTERM and
SIGINT to the worker; exits as the worker exited. When this process dies, the worker does too
(the lifeline closes). Standard library only, no site import, and only the C halves of
``socket`` and ``signal`` (the Python halves import ``enum``, ``re`` and more): it starts in about
10 ms, which a worker's replacement waits for.

The Ray driver (``ray_driver.py``) speaks the same protocol for workers hosted by Ray actors: it
answers ``remote N`` instead of ``pid N`` (the worker is on another machine), and this process
forwards its signals as ``signal N`` lines on the connection instead of ``kill``.

While the fork server is being started again (it died, and the bridge restarts it), its control
socket refuses connections: the shim waits for it, up to ``SNAKEPIT_FORK_WAIT`` seconds (default
60), unless the bridge marked it gone for good (a ``.gone`` file beside the socket).
"""

import _signal as signal
import _socket
import os
import sys
import time
from array import array


def connect(control):
    """A connection to the fork server, waiting while it is being started again."""
    try:
        wait = float(os.environ.get("SNAKEPIT_FORK_WAIT", "60"))
    except ValueError:
        wait = 60.0
    deadline = time.monotonic() + wait
    gone = os.path.splitext(control)[0] + ".gone"
    while True:
        conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            conn.connect(control)
            return conn
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            conn.close()
            if os.path.exists(gone) or time.monotonic() >= deadline:
                sys.stderr.write(f"forkshim: no fork server at {control}: {exc}\n")
                sys.exit(70)
            time.sleep(0.02)


class Lines:
    """The lines the fork server writes on a connection."""

    def __init__(self, conn):
        self.conn = conn
        self.buffer = b""

    def readline(self):
        while b"\n" not in self.buffer:
            chunk = self.conn.recv(4096)
            if not chunk:
                break
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()


def main() -> None:
    control = sys.argv[1]
    argv = sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:]
    # The write end stays open, unused, for as long as this process lives: the worker reads EOF
    # on the other end when it dies.
    lifeline_r, _lifeline_w = os.pipe()
    conn = connect(control)
    # A Python literal, not JSON: importing json would double this process's start-up time.
    request = repr({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
    fds = array("i", [1, 2, lifeline_r])
    conn.sendmsg([request], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
    os.close(lifeline_r)
    reader = Lines(conn)
    first = reader.readline().split()
    if len(first) == 2 and first[0] == "exit":
        # The worker never started (the Ray driver says why on standard error).
        sys.exit(os.WEXITSTATUS(int(first[1])) or 70)
    if len(first) != 2 or first[0] not in ("pid", "remote"):
        sys.stderr.write("forkshim: the fork server did not start a worker\n")
        sys.exit(70)
    worker = int(first[1])
    remote = first[0] == "remote"

    def forward(sig, _frame):
        if remote:
            # A worker on another machine: the Ray driver sends the signal on.
            try:
                conn.sendall(b"signal %d\n" % sig)
            except OSError:
                pass
            return
        try:
            os.kill(worker, sig)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    line = reader.readline().split()
    if len(line) != 2 or line[0] != "exit":
        if not remote:
            try:
                os.kill(worker, signal.SIGKILL)
            except ProcessLookupError:
                pass
        sys.stderr.write("forkshim: lost the fork server\n")
        sys.exit(70)
    status = int(line[1])
    if os.WIFSIGNALED(status):
        # Die of the same signal, so the pool sees what really happened to the worker.
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


if __name__ == "__main__":
    main()
