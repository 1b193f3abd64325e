"""DSPy, imported on first use (a worker that only runs tools starts without it), with its
per-process histories bounded."""

from __future__ import annotations

import importlib
import os
from typing import Any

# LiteLLM (which DSPy's LM uses) fetches its model cost map from GitHub when first imported, and
# retries for about 15 s where it cannot: a worker uses the copy LiteLLM ships unless the user
# sets the variable otherwise. No network access but the LM provider's.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

_dspy_ready = False


def load_dspy() -> Any:
    """The ``dspy`` module, its global histories bounded on first use."""
    global _dspy_ready
    import dspy

    if not _dspy_ready:
        _bound_global_history()
        _dspy_ready = True
    return dspy


def _bound_global_history() -> None:
    """DSPy keeps, per process, the last 10,000 LM requests (prompts and responses) in a global
    list and in the ``history`` of every module and LM that took part, plus a global trace of the
    last 10,000 predictions. A long-lived worker then holds tens of megabytes for nothing (the soak
    test saw a worker grow by 20%), and every prompt lingers. Each call's own history is collected
    separately, so a worker keeps the last ``SNAKEPIT_DSPY_HISTORY`` requests (default 200); the
    trace is per call (see ``DspyRuntime.call``)."""
    from dspy.clients import base_lm

    # The module, not the `settings` object that `dspy.dsp.utils` exports under the same name.
    settings = importlib.import_module("dspy.dsp.utils.settings")
    try:
        size = max(1, int(os.environ.get("SNAKEPIT_DSPY_HISTORY", "200")))
    except ValueError:
        size = 200
    base_lm.MAX_HISTORY_SIZE = size
    del base_lm.GLOBAL_HISTORY[:-size]
    with settings.global_lock:
        settings.main_thread_config["max_history_size"] = size
