"""What the fork server imports before it forks: real modules, and safe to fork after."""

import os
import subprocess
import sys
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def test_the_preloaded_modules_import_and_start_no_thread():
    # In a fresh interpreter: importing them must leave the process as forkable as before (no
    # thread started, no gRPC channel or server made).
    script = (
        "import importlib, threading\n"
        "from snakepit_bridge import forkserver\n"
        "before = threading.active_count()\n"
        "for name in forkserver.PRELOAD:\n"
        "    importlib.import_module(name)\n"
        "assert threading.active_count() == before, threading.enumerate()\n"
        "print(len(forkserver.PRELOAD))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE_ROOT), *sys.path]))
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) > 5
