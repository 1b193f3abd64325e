"""On the Python path of a test that needs a fork server that never starts: Python imports this
module at start-up, and it makes exactly the fork server exit (workers start normally)."""

import sys

if "snakepit_bridge.forkserver" in getattr(sys, "orig_argv", []):
    sys.stderr.write("test: this fork server is told to fail at start\n")
    sys.exit(3)
