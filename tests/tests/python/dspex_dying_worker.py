"""Imported by a worker at start: records the start, then kills the worker after
``DSPEX_TEST_DIE_AFTER_MS`` (a worker that starts fine and keeps crashing)."""

import os
import threading

_after = os.environ.get("DSPEX_TEST_DIE_AFTER_MS")
if _after:
    with open(os.environ["DSPEX_TEST_STARTS_FILE"], "a") as _f:
        _f.write(f"{os.getpid()}\n")
    threading.Timer(int(_after) / 1000.0, lambda: os._exit(3)).start()
