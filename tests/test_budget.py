"""The error budget: flags parsed with errors naming the flag, per-step limits, and the gate on
observed test values (a step without any observed value is refused, naming the step)."""

from __future__ import annotations

import math

import pytest

from edgecomp.budget import (
    DEFAULT_MAX_INCREASE,
    EXIT_BUDGET_NOT_MET,
    Budget,
    BudgetFlagError,
    budget_from_flags,
    gate,
    parse_increase,
)


@pytest.mark.parametrize(("text", "value"), [("1%", 0.01), (" 2.5 % ", 0.025), ("0.01", 0.01)])
def test_parse_increase(text, value):
    assert parse_increase(text) == pytest.approx(value)


def test_default_budget_is_one_percent_at_every_step():
    budget = budget_from_flags()
    assert budget.max_increase == DEFAULT_MAX_INCREASE == 0.01
    assert budget.max_error is None and budget.steps(3) == [0, 1, 2]


def test_max_error_alone_replaces_the_default_both_means_both():
    assert budget_from_flags(max_error="2.5") == Budget(max_increase=None, max_error=2.5)
    both = budget_from_flags("10%", "2.0")
    # the relative limit (1.1, 2.2, 3.3) and the absolute one (2.0): the tighter per step
    assert both.limits([1.0, 2.0, 3.0]) == pytest.approx([1.1, 2.0, 2.0])


def test_no_error_limit_turns_the_gate_off():
    assert budget_from_flags(no_error_limit=True) is None


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"max_error_increase": "one percent"}, "--max-error-increase"),
        ({"max_error_increase": "-1%"}, "--max-error-increase"),
        ({"max_error": "abc"}, "--max-error"),
        ({"max_error": "-0.5"}, "--max-error"),
        ({"max_error": "nan"}, "--max-error"),
        ({"at_horizon": "x"}, "--at-horizon"),
        ({"at_horizon": 0}, "--at-horizon"),
        ({"at_horizon": 9, "horizon": 8}, "--at-horizon 9 is beyond"),
        ({"no_error_limit": True, "max_error": "1"}, "--no-error-limit"),
    ],
)
def test_bad_budget_flags_are_refused_naming_the_flag(kwargs, flag):
    with pytest.raises(BudgetFlagError, match=flag) as info:
        budget_from_flags(**kwargs)
    assert "\n" not in str(info.value)


def _metrics(reference, artifact, split="test"):
    return {"split": split, "reference": {"mae": reference}, "artifact": {"mae": artifact}}


def test_gate_passes_within_and_fails_beyond_the_limit():
    budget = Budget(max_increase=0.01)
    ok = gate(_metrics([1.0, 2.0], [1.009, 2.0]), budget)
    assert ok.passed and ok.worst_step == 0
    bad = gate(_metrics([1.0, 2.0], [1.0, 2.05]), budget)
    assert not bad.passed and bad.worst_step == 1
    assert bad.worst_change == pytest.approx(0.025)
    assert bad.excess == pytest.approx(2.05 / 2.02 - 1)
    assert "h2" in bad.describe() and "+2.50 %" in bad.describe()


def test_gate_at_one_horizon_ignores_the_others():
    result = gate(_metrics([1.0, 2.0], [5.0, 2.0]), Budget(at_horizon=2))
    assert result.passed and result.record()["limits"][0] is None
    assert math.isinf(result.limits[0])


def test_gate_refuses_a_step_without_observed_values():
    with pytest.raises(ValueError, match="no observed value at step"):
        gate(_metrics([1.0, None, 2.0], [1.0, None, 2.0]), Budget())
    # a step the budget does not check may be empty
    assert gate(_metrics([1.0, None], [1.0, None]), Budget(at_horizon=1)).passed


def test_exit_code_is_its_own():
    assert EXIT_BUDGET_NOT_MET not in (0, 1, 2)


def test_tune_constraints_mean_what_the_budget_flags_mean():
    from edgecomp.tune import Constraints

    # --max-error is an absolute MAE in every command, tune included
    c = Constraints.from_budget(budget_from_flags(max_error="5", at_horizon="2"), max_size_kb=1)
    assert (c.max_error_increase, c.max_error_abs, c.horizon) == (None, 5.0, 2)
    measured = {"error_increase": 0.0, "error_abs": 6.0, "p99_ms": 1.0, "size_bytes": 512}
    assert c.violations(measured)["error_abs"] == pytest.approx(0.2)
    assert c.budget() == Budget(max_increase=None, max_error=5.0, at_horizon=2)
    assert Constraints.from_budget(None).budget() is None
    assert Constraints.from_budget(budget_from_flags()).max_error_increase == 0.01
