"""The fallback ladder on the real traffic data: each rung fixes a planted breach, the gate uses
the test split only after validation chose, a refusal writes nothing and exits with its own code,
and a mixed plan that is not smaller than the float artifact is never emitted.

The breaches are planted with tight budgets (and, for calibration, one spiked calibration
window) on the tiny 2-epoch models of ``traffic_checkpoints``; each budget sits between what the
plain build measured and what the rung measured, on both splits.
"""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from edgecomp.budget import EXIT_BUDGET_NOT_MET, Budget, BudgetNotMet
from edgecomp.ladder import build_within_budget
from edgecomp.pipeline import BuildConfig
from edgecomp.targets.onnx import OnnxTarget

pytestmark = pytest.mark.skipif(not OnnxTarget.is_available(), reason=OnnxTarget.missing_reason())


def _load(checkpoints, path, arch):
    import torch

    from edgecomp.frontend import load_model
    from edgecomp.workflow import dataset_for

    torch.set_num_threads(1)
    model = load_model(checkpoints[arch])
    return model, dataset_for(model.spec, path)


@pytest.fixture(scope="module")
def lstm(traffic_checkpoints, traffic_path):
    return _load(traffic_checkpoints, traffic_path, "lstm")


@pytest.fixture(scope="module")
def tcn_spiked(traffic_checkpoints, traffic_path):
    """The TCN, with one calibration window holding a reading 300 standard deviations out."""
    from edgecomp.data import Windows

    model, dataset = _load(traffic_checkpoints, traffic_path, "tcn")
    x = dataset.train.x.copy()
    x[0, 5, 3] = 300.0  # window 0 is always among the calibration windows
    train = Windows(x, dataset.train.y, dataset.train.starts, dataset.train.y_observed)
    return model, dataclasses.replace(dataset, train=train)


def _build(model, dataset, config, tmp_path, budget, rungs):
    out = tmp_path / "a.edgepkg"
    result = build_within_budget(model, dataset, config, out, budget=budget, rungs=rungs)
    assert out.exists()
    return result.manifest["budget"]


def _plain_missed(section):
    plain = section["ladder"][0]
    assert plain["rung"] == "plain" and not plain["test"]["passed"]
    return plain


def test_within_budget_no_rung_is_tried(lstm, tmp_path):
    # execute
    section = _build(*lstm, BuildConfig(precision="int8"), tmp_path, Budget(), None)
    # assert: the plain build met the budget; the ladder did not run
    assert section["met_by"] == "plain" and section["ladder"] == []
    assert section["gate"]["split"] == "test" and section["gate"]["passed"]


def test_calibration_rung_fixes_a_spiked_calibration_set(tcn_spiked, tmp_path):
    # setup: min-max ranges stretched by the spike; the input layer is not kept float
    config = BuildConfig(precision="int8", calibration_windows=512, options={"max_input_ratio": 0})
    # execute
    section = _build(*tcn_spiked, config, tmp_path, Budget(max_increase=0.025), ("calibration",))
    # assert
    _plain_missed(section)
    assert section["met_by"] == "calibration"
    chosen = [t for t in section["ladder"] if t["test"] and t["test"]["passed"]]
    assert chosen[0]["options"]["calibration_method"] == "percentile"
    assert all(t["seconds"] > 0 and t["size_bytes"] > 0 for t in section["ladder"])


def test_bias_correction_rung_fixes_a_breach(lstm, tmp_path):
    # execute
    config = BuildConfig(precision="int4")
    section = _build(*lstm, config, tmp_path, Budget(max_increase=0.0015), ("bias-correction",))
    # assert
    _plain_missed(section)
    assert section["met_by"] == "bias-correction"
    assert section["ladder"][-1]["measured"]["split"].startswith("train")


def test_qat_rung_fixes_a_breach(lstm, tmp_path):
    # execute
    section = _build(*lstm, BuildConfig(precision="int4"), tmp_path, Budget(0.001), ("qat",))
    # assert
    _plain_missed(section)
    assert section["met_by"] == "qat"
    measured = section["ladder"][-1]["measured"]
    assert measured["split"] == "train" and measured["bits"] == 4 and measured["epochs"] >= 1


def test_mixed_rung_fixes_a_breach_and_is_smaller_than_float(lstm, tmp_path):
    # execute
    result = build_within_budget(
        *lstm,
        BuildConfig(precision="int4"),
        tmp_path / "m.edgepkg",
        budget=Budget(max_increase=0.001),
        rungs=("mixed",),
    )
    # assert
    section = result.manifest["budget"]
    _plain_missed(section)
    assert section["met_by"] == "mixed" and result.manifest["precision"] == "mixed"
    float_size = build_within_budget(
        *lstm, BuildConfig(precision="fp32"), tmp_path / "f.edgepkg", budget=None
    ).path.stat()
    assert result.path.stat().st_size < float_size.st_size


def test_refusal_writes_nothing_and_names_the_float_artifact(lstm, tmp_path):
    # setup: a zero budget leaves every layer in float: the mixed plan is the float artifact
    out = tmp_path / "never.edgepkg"
    # execute
    with pytest.raises(BudgetNotMet) as info:
        build_within_budget(
            *lstm, BuildConfig(precision="int4"), out, budget=Budget(0.0), rungs=("mixed",)
        )
    # assert
    message = str(info.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert "worst step is test h" in message and "Closest:" in message and " B" in message
    assert "float artifact" in message and "--precision fp32" in message
    assert info.value.trials and info.value.trials[0]["rung"] == "plain"


def test_cli_exit_code_when_the_budget_cannot_be_met(traffic_checkpoints, traffic_path, tmp_path):
    from edgecomp.cli import main

    # execute: analyze's mixed artifact under a zero budget on the GRU
    out = tmp_path / "mixed.edgepkg"
    args = ["analyze", str(traffic_checkpoints["gru"]), "--data", str(traffic_path)]
    args += ["--out-dir", str(tmp_path / "an"), "--max-error-increase", "0", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    # assert
    assert result.exit_code == EXIT_BUDGET_NOT_MET, result.output
    assert "budget not met" in result.output and not out.exists()


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--max-error-increase", "lots"], "--max-error-increase"),
        (["--max-error", "-1"], "--max-error"),
        (["--at-horizon", "99", "--max-error", "1"], "--at-horizon 99 is beyond"),
    ],
)
def test_cli_bad_budget_is_refused_naming_the_flag(
    traffic_checkpoints, traffic_path, flags, needle
):
    from edgecomp.cli import main

    args = ["analyze", str(traffic_checkpoints["lstm"]), "--data", str(traffic_path), *flags]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and needle in result.output


def _planted(dataset):
    """``dataset`` with every imputed target value of the validation split set to 1e6."""
    values = dataset.values.copy()
    val, idx = dataset.val, dataset.target_index
    n, h, f = (~val.y_observed).nonzero()
    rows = val.starts[n] + dataset.config.input_len + h
    assert len(rows) > 0  # the traffic validation split has imputed counts
    values[rows, [idx[i] for i in f]] = 1e6
    return dataclasses.replace(dataset, values=values)


def test_planted_imputed_truth_changes_no_build_or_evaluation_metric(lstm):
    from edgecomp.pipeline import compile_artifact
    from edgecomp.workflow import evaluate

    # setup
    model, dataset = lstm
    planted = _planted(dataset)
    config = BuildConfig(precision="int8", eval_split="val")
    # execute
    clean, _ = compile_artifact(model, dataset, config)
    dirty, _ = compile_artifact(model, planted, config)
    # assert: verification, baselines and the training evaluation score observed values only
    for key in ("reference", "artifact"):
        assert dirty["metrics"][key]["mae"] == pytest.approx(clean["metrics"][key]["mae"])
        assert clean["metrics"][key]["n_imputed"] > 0
    # (persistence forecasts read the planted values as inputs; the training mean does not)
    baselines = clean["metrics"]["baselines"]
    assert dirty["metrics"]["baselines"]["train_mean"]["mae"] == pytest.approx(
        baselines["train_mean"]["mae"]
    )
    assert all(
        b["n_imputed"] == clean["metrics"]["artifact"]["n_imputed"] for b in baselines.values()
    )
    assert evaluate(model, planted, "val")["model"]["mae"] == pytest.approx(
        evaluate(model, dataset, "val")["model"]["mae"]
    )


def test_cli_build_keeps_the_budget_and_says_so(traffic_checkpoints, traffic_path, tmp_path):
    import edgecomp_runtime
    from edgecomp.cli import main

    # setup
    out = tmp_path / "a.edgepkg"
    args = ["build", str(traffic_checkpoints["tcn"]), "--data", str(traffic_path), "-o", str(out)]
    # execute: a 5 % budget on a plain int8 build
    result = CliRunner().invoke(main, [*args, "--max-error-increase", "5%"])
    # assert
    assert result.exit_code == 0, result.output
    assert "budget met by: plain" in " ".join(result.output.split())  # the line may wrap
    manifest = edgecomp_runtime.load(out).manifest
    assert manifest["budget"]["checked"] and manifest["budget"]["gate"]["split"] == "test"


def test_cli_build_refusal_exit_code_and_nothing_written(
    traffic_checkpoints, traffic_path, tmp_path
):
    from edgecomp.cli import main

    # setup: an absolute MAE no forecaster reaches, on the int4 GRU: every rung misses
    out = tmp_path / "never.edgepkg"
    args = ["build", str(traffic_checkpoints["gru"]), "--data", str(traffic_path), "-o", str(out)]
    # execute
    result = CliRunner().invoke(main, [*args, "-p", "int4", "--max-error", "0.001"])
    # assert
    assert result.exit_code == EXIT_BUDGET_NOT_MET, result.output
    assert "worst step is test h" in result.output and not out.exists()


def test_cli_build_refuses_a_step_beyond_the_horizon(traffic_checkpoints, traffic_path, tmp_path):
    from edgecomp.cli import main

    args = ["build", str(traffic_checkpoints["tcn"]), "--data", str(traffic_path)]
    result = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "x"), "--at-horizon", "5"])
    assert result.exit_code == 2 and "--at-horizon 5 is beyond" in result.output


def _capabilities(**declared):
    from edgecomp.targets import Capabilities, Precision

    int8 = frozenset({Precision.FP32, Precision.INT8})
    return Capabilities(
        precisions=int8, engine="onnx", calibrated=int8 - {Precision.FP32}, **declared
    )


def test_calibration_variants_come_from_declared_capabilities():
    from edgecomp.ladder import calibration_variants
    from edgecomp.targets import Precision

    methods = {"calibration_option": "calibration_method", "calibration_methods": ("percentile",)}
    # execute
    without = calibration_variants(_capabilities(**methods), "int8")
    with_kernel = calibration_variants(
        _capabilities(**methods, per_channel=frozenset({Precision.INT8})), "int8"
    )
    # assert: a target declaring no per-channel kernel never gets per-channel; one that does does
    assert without == [{"calibration_method": "percentile"}]
    assert {"per_channel": True} in with_kernel
    assert calibration_variants(_capabilities(), "int8") == []
    assert calibration_variants(_capabilities(), "int4") == []


def test_calibration_rung_asks_no_per_channel_of_a_target_without_the_kernel(monkeypatch):
    from edgecomp import ladder
    from edgecomp.targets import get_target

    declared = _capabilities(calibration_option="calibration_method")
    monkeypatch.setattr(get_target("onnx"), "capabilities", declared)
    plain = ladder.Candidate("plain", "as asked", None, BuildConfig(precision="int8"))
    base = ladder.Trial(plain, {"target": {"backend": "onnx"}}, {}, None, 0.0)
    # execute
    proposed = ladder._calibration(None, base)
    monkeypatch.undo()
    proposed_real = ladder._calibration(None, base)
    # assert: nothing to try without declared methods or kernels; the real onnx target declares
    assert proposed == []
    assert any(c.config.options.get("per_channel") for c in proposed_real)
