"""The process the pool starts and supervises when workers come from the fork server.

``python -S forkshim.py CONTROL_SOCKET -- SERVER_ARGS...``: asks the fork server for a worker,
handing it this process's standard output and error and a lifeline pipe; forwards SIGTERM and
SIGINT to the worker; exits as the worker exited. When this process dies, the worker does too
(the lifeline closes). Standard library only, no site import: it starts in a few milliseconds.
"""

import json
import os
import signal
import socket
import sys


def main() -> None:
    control = sys.argv[1]
    argv = sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:]
    # The write end stays open, unused, for as long as this process lives: the worker reads EOF
    # on the other end when it dies.
    lifeline_r, _lifeline_w = os.pipe()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(control)
    request = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
    socket.send_fds(conn, [request], [1, 2, lifeline_r])
    os.close(lifeline_r)
    reader = conn.makefile("r")
    first = reader.readline().split()
    if len(first) != 2 or first[0] != "pid":
        sys.stderr.write("forkshim: the fork server did not start a worker\n")
        sys.exit(70)
    worker = int(first[1])

    def forward(sig, _frame):
        try:
            os.kill(worker, sig)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    line = reader.readline().split()
    if len(line) != 2 or line[0] != "exit":
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
