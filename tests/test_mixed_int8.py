"""Mixed precision keeps sensitive layers in int8 before float (int4 builds): a planted
sensitivity where int8 for one layer meets the budget and no layer goes float; the plan's record
and the ladder's candidate say which layers are int4, int8 and float."""

from __future__ import annotations

import json

import pytest

from edgecomp.analyze import Sensitivity, measure
from edgecomp.budget import BudgetNotMet
from edgecomp.mixed import Budget, plan_mixed
from edgecomp.pipeline import BuildConfig
from edgecomp.targets.onnx import OnnxTarget
from helpers.testing import int4_sensitivity

pytestmark = pytest.mark.skipif(not OnnxTarget.is_available(), reason=OnnxTarget.missing_reason())


def _worst(mae: list[float], reference: list[float]) -> float:
    return max(v / r - 1 for v, r in zip(mae, reference, strict=True))


@pytest.fixture(scope="module")
def planted(traffic_checkpoints, traffic_path):
    """The traffic LSTM, a sensitivity planted to rank ``head`` first, and a budget between the
    all-int4 build's worst step and the worst step with only ``head`` in int8 (both measured)."""
    from edgecomp.frontend import load_model
    from edgecomp.workflow import dataset_for

    model = load_model(traffic_checkpoints["lstm"])
    dataset = dataset_for(model.spec, traffic_path)
    config = BuildConfig(precision="int4", eval_split="val")
    reference = measure(model, dataset, BuildConfig(precision="fp32", eval_split="val"), [])
    all_int4 = measure(model, dataset, config, [])
    head_int8 = measure(model, dataset, config, [], ["head"])
    worst_all, worst_head = (_worst(m.mae, reference.mae) for m in (all_int4, head_int8))
    assert worst_head < worst_all, "setup: int8 for the head must help"
    layers = list(all_int4.precisions)
    layer_mae = {n: [v * (2.0 if n == "head" else 1.0) for v in all_int4.mae] for n in layers}
    sens = int4_sensitivity(all_int4, reference.mae, layer_mae)
    budget = Budget(max_increase=(worst_all + worst_head) / 2)
    return model, dataset, sens, budget, head_int8


def test_int8_for_one_layer_meets_the_budget_and_no_layer_goes_float(planted):
    # setup
    model, dataset, sens, budget, head_int8 = planted
    # execute
    plan = plan_mixed(model, dataset, sens, budget)
    # assert: all int4 failed, then the head went int8 and the budget held: no float step
    assert plan.kept_int8 == ["head"] and plan.kept_float == []
    assert [s.kept_int8 for s in plan.steps] == [[], ["head"]]
    assert plan.final.mae == pytest.approx(head_int8.mae)
    assert plan.final.precisions["head"] == "int8"
    assert plan.describe() == "keep ['head'] in int8"


def test_record_gives_each_layer_its_precision(planted):
    # execute
    model, dataset, sens, budget, _ = planted
    record = plan_mixed(model, dataset, sens, budget).record()
    # assert
    assert record["kept_int8"] == ["head"] and record["kept_float"] == []
    assert record["precisions"] == {n: "int8" if n == "head" else "int4" for n in sens.quantizable}
    assert record["steps"][-1]["kept_int8"] == ["head"]
    assert record["layers"]["head"].startswith("kept in int8 by the mixed-precision search")
    assert json.dumps(record)


def test_int8_layers_go_float_only_after_every_layer_is_int8(planted):
    # setup: a zero budget: the search must pass through every layer in int8 first
    model, dataset, sens, _, _ = planted
    # execute
    plan = plan_mixed(model, dataset, sens, Budget(max_increase=0.0))
    # assert
    moves = [(s.kept_int8, s.kept_float) for s in plan.steps]
    first_float = next(i for i, (_, floats) in enumerate(moves) if floats)
    assert sorted(moves[first_float - 1][0]) == sorted(sens.quantizable)
    assert plan.kept_float[0] == "head"  # the planted most sensitive layer goes float first


def test_ladder_candidate_keeps_the_plan_in_int8(planted, tmp_path, monkeypatch):
    # setup: the mixed rung plans with the planted sensitivity
    import edgecomp.analyze
    from edgecomp.ladder import build_within_budget

    model, dataset, sens, budget, _ = planted
    monkeypatch.setattr(edgecomp.analyze, "analyze", lambda *_a, **_k: sens)
    lines: list[str] = []
    # execute: the test split gates it; either way the trial is recorded
    try:
        result = build_within_budget(
            model,
            dataset,
            BuildConfig(precision="int4"),
            tmp_path / "m.edgepkg",
            budget=budget,
            rungs=("mixed",),
            log=lines.append,
        )
        trials = result.manifest["budget"]["ladder"]
        layers = {r["name"]: r for r in result.manifest["layers"]}
        assert layers["head"]["precision"] == "int8"
        assert result.manifest["recipe"]["mixed_precision"]["kept_int8"] == ["head"]
    except BudgetNotMet as exc:
        trials = exc.trials
    # assert
    mixed = [t for t in trials if t["rung"] == "mixed"]
    assert mixed and mixed[0]["detail"] == "keep ['head'] in int8"
    assert mixed[0]["options"]["keep_int8"] == ["head"]
    assert any("mixed: keep ['head'] in int8" in line for line in lines)


def test_a_target_that_ignores_keep_int8_gets_the_float_steps(monkeypatch):
    # setup: a stub target that leaves keep_int8 layers in int4; only float for "a" helps
    import edgecomp.mixed as mixed
    from edgecomp.analyze import Measurement

    def stub(_model, _dataset, _config, kept_float, kept_int8=None):
        precisions = {n: "fp32" if n in kept_float else "int4" for n in ("a", "b")}
        mae = [1.0 if "a" in kept_float else 1.5]
        return Measurement(list(kept_float), mae, 100, precisions, {}, (), list(kept_int8 or []))

    sens = Sensitivity(
        target="x86-64-avx2",
        precision="int4",
        split="val",
        layers={"a": "Conv", "b": "Gemm"},
        float_mae=[1.0],
        layer_mae={"a": [1.5], "b": [1.2]},
        quantizable=["a", "b"],
        all_mae=[1.6],
    )
    monkeypatch.setattr(mixed, "measure", stub)
    # execute
    plan = plan_mixed(None, None, sens, Budget(max_increase=0.01))
    # assert
    assert plan.kept_float == ["a"] and plan.kept_int8 == []
    assert "ignored option keep_int8: ['a'] stayed int4" in plan.int8_refused
    assert plan.record()["int8_refused"] == plan.int8_refused
