"""Mixed precision: budgets, a search that stops as soon as the budget holds, and one that says
plainly when it cannot; the mixed artifact's manifest says why each layer ended where it did."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgecomp.analyze import analyze
from edgecomp.mixed import Budget, BudgetError, plan_mixed
from edgecomp.targets.onnx import OnnxTarget

pytestmark = pytest.mark.skipif(not OnnxTarget.is_available(), reason=OnnxTarget.missing_reason())


@pytest.fixture(scope="module")
def lstm(traffic_checkpoints, traffic_path):
    from edgecomp.frontend import load_model
    from edgecomp.workflow import dataset_for

    model = load_model(traffic_checkpoints["lstm"])
    dataset = dataset_for(model.spec, traffic_path)
    return model, dataset, analyze(model, dataset, precision="int4")


# Budget parsing and refusals: tests/test_budget.py (edgecomp.budget, re-exported here).


def test_budget_limits_at_a_named_horizon():
    # execute
    limits = Budget(max_increase=0.1, at_horizon=2).limits([1.0, 2.0, 3.0])
    # assert
    assert limits == [float("inf"), pytest.approx(2.2), float("inf")]
    with pytest.raises(ValueError, match="beyond the model's horizon"):
        Budget(max_increase=0.1, at_horizon=4).limits([1.0, 2.0, 3.0])


def test_generous_budget_stops_at_the_first_step(lstm):
    # execute
    plan = plan_mixed(*lstm, Budget(max_increase=10.0))
    # assert
    assert plan.kept_float == [] and len(plan.steps) == 1


def test_search_stops_as_soon_as_the_budget_holds(lstm):
    # setup
    model, dataset, sens = lstm
    limits = Budget(max_increase=0.0).limits(sens.float_mae)
    # execute: a zero budget needs layers in float; each earlier step must have failed it
    plan = plan_mixed(model, dataset, sens, Budget(max_increase=0.0))
    # assert
    held = [
        all(v <= lim * (1 + 1e-6) for v, lim in zip(s.mae, limits, strict=True)) for s in plan.steps
    ]
    assert held[-1] and not any(held[:-1])
    # one layer one rung per step: int4 -> int8 first (every layer), then int8 -> float
    assert len(plan.steps) == 1 + len(plan.kept_int8) + 2 * len(plan.kept_float)
    assert plan.kept_float[0] == max(
        sens.quantizable,
        key=lambda n: max(a - b for a, b in zip(sens.layer_mae[n], sens.float_mae, strict=True)),
    )


def test_budget_at_a_named_horizon_checks_only_that_step(lstm):
    # setup
    model, dataset, sens = lstm
    budget = Budget(max_increase=0.0, at_horizon=2)
    # execute
    plan = plan_mixed(model, dataset, sens, budget)
    # assert
    assert plan.final.mae[1] <= sens.float_mae[1] * (1 + 1e-6)
    assert plan.limits[0] == float("inf") and plan.record()["limits"][0] is None
    assert "at h2" in plan.record()["budget"]["text"]


def test_unreachable_budget_is_reported(lstm):
    with pytest.raises(BudgetError, match="even with every layer in float"):
        plan_mixed(*lstm, Budget(max_error=1e-6))


def test_record_lists_each_layer_and_why(lstm):
    # execute
    plan = plan_mixed(*lstm, Budget(max_increase=0.0))
    record = plan.record()
    # assert
    assert set(record["layers"]) == set(lstm[2].quantizable)
    for name in plan.kept_float:
        assert record["layers"][name].startswith("kept in float by the mixed-precision search")
    assert record["budget"]["text"] == "MAE +0 % at every horizon step"
    assert json.dumps(record)  # JSON-ready


def test_cli_builds_a_mixed_artifact(tmp_path, traffic_checkpoints, traffic_path):
    # setup
    import edgecomp_runtime
    from edgecomp.cli import main

    out = tmp_path / "mixed.edgepkg"
    args = ["analyze", str(traffic_checkpoints["lstm"]), "--data", str(traffic_path)]
    # 0.1 %: int4 alone misses it, the plan keeps some (not all) layers in float
    budget = ["--max-error-increase", "0.1%", "--out", str(out), "--out-dir", str(tmp_path)]
    # execute
    result = CliRunner().invoke(main, [*args, *budget])
    # assert
    assert result.exit_code == 0, result.output
    manifest = edgecomp_runtime.load(out).manifest
    assert manifest["precision"] == "mixed"
    mixed = manifest["recipe"]["mixed_precision"]
    layers = {layer["name"]: layer for layer in manifest["layers"]}
    for name in mixed["kept_float"]:
        assert layers[name]["precision"] == "fp32"
        assert "kept in float by the mixed-precision search" in layers[name]["reason"]
    assert json.loads((tmp_path / "mixed.json").read_text())["kept_float"] == mixed["kept_float"]


def test_cli_reports_an_unreachable_budget(tmp_path, traffic_checkpoints, traffic_path):
    # setup
    from edgecomp.cli import main

    args = ["analyze", str(traffic_checkpoints["lstm"]), "--data", str(traffic_path)]
    # execute
    result = CliRunner().invoke(
        main, [*args, "--max-error", "0.000001", "--out-dir", str(tmp_path)]
    )
    # assert
    assert result.exit_code == 2 and "cannot meet the budget" in result.output


def test_report_section_shows_each_layer_cost_and_final_precision(lstm):
    # setup
    from edgecomp.report.mixed_precision import mixed_plots, mixed_sections

    plan = plan_mixed(*lstm, Budget(max_increase=0.0))
    final = {name: "fp32" if name in plan.kept_float else "int4" for name in lstm[2].layers}
    report = {"mixed_precision": {"tcn|x86|mixed": {**plan.record(), "final_precision": final}}}
    # execute
    ((heading, note, (columns, rows)),) = mixed_sections(report)
    plots = mixed_plots(report)
    # assert
    assert heading == "Mixed precision: tcn" and "kept in float" in note
    assert columns[-1] == "final"
    by_layer = {row[0][0]: row for row in rows}
    assert all(by_layer[name][-1][0] == "fp32" for name in plan.kept_float)
    assert plots["sensitivity_0"].startswith(b"\x89PNG")
    assert mixed_sections({}) == [] and mixed_plots({}) == {}
