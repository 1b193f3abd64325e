"""LMs built from their wire configuration (``lm.py``)."""

from conftest import PB2

from snakepit_bridge.lm import build_lm
from snakepit_bridge.values import to_proto


def litellm(**fields):
    return PB2.LmConfig(litellm=PB2.LiteLlmConfig(model="openai/gpt-4o-mini", **fields))


def test_extra_keyword_arguments_reach_dspy_lm_and_named_fields_win():
    extra = to_proto(PB2, {"top_p": 0.9, "num_retries": 3, "temperature": 0.7}).map
    setup = build_lm(PB2, litellm(temperature=0.2, kwargs=extra))
    assert setup.lm.kwargs["top_p"] == 0.9
    assert setup.lm.num_retries == 3 or setup.lm.kwargs.get("num_retries") == 3
    assert setup.lm.kwargs["temperature"] == 0.2


def test_without_extra_keyword_arguments_nothing_is_added():
    setup = build_lm(PB2, litellm())
    assert "top_p" not in setup.lm.kwargs


def test_workers_use_litellms_own_cost_map_instead_of_fetching_it(monkeypatch):
    import importlib

    import snakepit_bridge.dspy_loading as loading

    monkeypatch.delenv("LITELLM_LOCAL_MODEL_COST_MAP", raising=False)
    importlib.reload(loading)
    import os

    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "False")
    importlib.reload(loading)
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "False", "the user's setting stays"


def test_a_calls_cost_is_the_sum_of_what_litellm_priced():
    from snakepit_bridge.prediction import record_of

    entries = [
        {"usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}, "cost": 0.25},
        {"usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}, "cost": None},
        {"usage": {}, "cost": 0.5},
    ]
    record = record_of(entries, with_history=False)
    assert record.usage["cost"] == 0.75
    assert record.usage["total_tokens"] == 8
    assert record.usage["lm_calls"] == 3
