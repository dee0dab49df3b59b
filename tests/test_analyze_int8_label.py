"""`edgecomp analyze --out` with an int4 plan that keeps layers in int8: when the test split
refuses it, the refusal names the mixed plan (not "plain (as asked)") and gives the size of the
artifact the plan compiles (its int8 layers included), not the all-int4 size."""

from __future__ import annotations

import pytest

from edgecomp.analyze import measure
from edgecomp.budget import Budget, BudgetNotMet
from edgecomp.mixed import MixedPlan
from edgecomp.pipeline import BuildConfig
from edgecomp.targets.onnx import OnnxTarget
from helpers.testing import int4_sensitivity

pytestmark = pytest.mark.skipif(not OnnxTarget.is_available(), reason=OnnxTarget.missing_reason())


def test_a_refused_int8_plan_is_named_and_sized_as_the_plan(traffic_tcn, tmp_path):
    # setup: the traffic TCN at int4, three layers kept in int8, and a budget no build meets
    from rich.console import Console

    from edgecomp.analyze_cli import _build_mixed

    model, dataset = traffic_tcn
    config = BuildConfig(precision="int4", eval_split="val")
    all_int4 = measure(model, dataset, config, [])
    layers = list(all_int4.precisions)
    int8 = layers[:3]
    planned = measure(model, dataset, config, [], int8)
    assert planned.size_bytes > all_int4.size_bytes, "setup: int8 layers must add bytes"
    sens = int4_sensitivity(all_int4, all_int4.mae, {n: all_int4.mae for n in layers})
    budget = Budget(max_increase=None, max_error=1e-9)
    plan = MixedPlan(budget, [], [all_int4, planned], [1e-9] * len(planned.mae), sens, int8)
    kw = {"options": {}, "calibration_windows": 256}
    out = tmp_path / "mixed.edgepkg"
    # execute
    with pytest.raises(BudgetNotMet) as refused:
        _build_mixed(model, dataset, plan, kw, str(out), Console(file=None, quiet=True))
    # assert: the refused artifact is the plan's, by name and by size; nothing was written
    text = str(refused.value)
    assert f"mixed ({plan.describe()}, as planned)" in text
    assert "plain" not in text and "the mixed plan's worst step" in text
    assert f"{planned.size_bytes:,} B" in text
    assert f"{all_int4.size_bytes:,} B" not in text
    assert refused.value.trials[0]["rung"] == "mixed"
    assert refused.value.trials[0]["size_bytes"] == planned.size_bytes
    assert not out.exists()
