"""Sensitivity analysis: one layer quantized at a time, per-horizon cost, table, heat map, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgecomp.analyze import Sensitivity, analyze, heatmap_png, relative_increase, sensitivity_table
from edgecomp.pipeline import BuildError
from edgecomp.targets.onnx import OnnxTarget

pytestmark = pytest.mark.skipif(not OnnxTarget.is_available(), reason=OnnxTarget.missing_reason())


@pytest.fixture(scope="module")
def lstm(traffic_checkpoints, traffic_path):
    from edgecomp.frontend import load_model
    from edgecomp.workflow import dataset_for

    model = load_model(traffic_checkpoints["lstm"])
    return model, dataset_for(model.spec, traffic_path)


@pytest.fixture(scope="module")
def sensitivity(lstm) -> Sensitivity:
    model, dataset = lstm
    return analyze(model, dataset, precision="int4")


def test_each_quantizable_layer_is_measured_at_every_horizon(sensitivity, lstm):
    # setup
    horizon = lstm[0].spec.horizon
    # assert
    assert sensitivity.layers == {"rnn": "LSTM", "head": "Gemm"}
    assert sensitivity.quantizable == ["rnn", "head"]
    assert len(sensitivity.float_mae) == horizon
    for name in sensitivity.quantizable:
        assert len(sensitivity.increase(name)) == horizon
        assert np.isfinite(sensitivity.increase(name)).all()
    # quantizing a layer changes the forecast: some horizon moves
    assert any(abs(v) > 0 for v in sensitivity.increase("rnn"))
    assert sensitivity.sizes["all"] < sensitivity.sizes["rnn"] < sensitivity.sizes["float"]


def test_table_and_json_round_trip(sensitivity, tmp_path):
    # execute
    columns, rows = sensitivity_table(sensitivity)
    path = sensitivity.write(tmp_path / "s.json")
    data = json.loads(path.read_text())
    # assert
    assert columns[:2] == ["layer", "op"] and columns[-1] == "worst"
    assert [row[0] for row in rows] == ["rnn", "head", "(all layers)"]
    assert data["increase"]["head"] == sensitivity.increase("head")
    assert sensitivity_table(data) == (columns, rows)


def test_heatmap_is_a_png(sensitivity, tmp_path):
    # execute
    png = heatmap_png(sensitivity, tmp_path / "h.png")
    # assert
    assert png.startswith(b"\x89PNG") and (tmp_path / "h.png").read_bytes() == png


def test_fp32_analysis_is_refused(lstm):
    with pytest.raises(BuildError, match="quantized precision"):
        analyze(*lstm, precision="fp32")


def test_relative_increase():
    assert relative_increase([1.1, 2.0], [1.0, 2.0]) == pytest.approx([0.1, 0.0])


def test_cli_analyze_writes_table_json_and_heatmap(tmp_path, traffic_checkpoints, traffic_path):
    # setup
    from edgecomp.cli import main

    out = tmp_path / "an"
    args = ["analyze", str(traffic_checkpoints["tcn"]), "--data", str(traffic_path)]
    # execute
    result = CliRunner().invoke(main, [*args, "--out-dir", str(out)])
    # assert
    assert result.exit_code == 0, result.output
    assert "head" in result.output and "(all layers)" in result.output
    assert json.loads((out / "sensitivity.json").read_text())["precision"] == "int4"
    assert (out / "sensitivity.png").read_bytes().startswith(b"\x89PNG")


def test_cli_refuses_out_without_a_budget(tmp_path, traffic_checkpoints, traffic_path):
    # setup
    from edgecomp.cli import main

    args = ["analyze", str(traffic_checkpoints["lstm"]), "--data", str(traffic_path)]
    # execute
    result = CliRunner().invoke(main, [*args, "--at-horizon", "2"])
    # assert
    assert result.exit_code == 2 and "--at-horizon needs" in result.output


def _target_available(backend: str) -> bool:
    from edgecomp.targets import get_target

    return get_target(backend).is_available()


@pytest.mark.slow
@pytest.mark.skipif(not _target_available("tflite"), reason="tflite toolchain not installed")
def test_tflite_target_plugs_in_through_keep_float(lstm):
    # execute: the same analysis, with the ARM target's own int4 scheme
    sens = analyze(*lstm, target="rpi5-cortex-a76", precision="int4")
    # assert
    assert sens.target == "rpi5-cortex-a76" and sens.quantizable
    for name in sens.quantizable:
        assert np.isfinite(sens.increase(name)).all()


@pytest.mark.skipif(not _target_available("tensorrt"), reason="tensorrt toolchain not installed")
def test_jetson_refuses_int4_with_its_reason(lstm):
    from edgecomp.targets import TargetError

    with pytest.raises(TargetError, match="int4"):
        analyze(*lstm, target="jetson-orin-nano", precision="int4")


def test_int8_stored_gru_weights_are_a_layer_the_plan_can_keep_float(
    traffic_checkpoints, traffic_path
):
    # setup: ONNX Runtime has no int8 GRU kernel; the x86 int8 build stores the GRU's weights in
    # int8 and computes in float, which the mixed plan may still undo
    from edgecomp.frontend import load_model
    from edgecomp.workflow import dataset_for

    model = load_model(traffic_checkpoints["gru"])
    # execute
    result = analyze(model, dataset_for(model.spec, traffic_path), precision="int8")
    # assert
    assert result.layers["rnn"] == "GRU" and "rnn" in result.quantizable
    assert result.sizes["rnn"] > result.sizes["all"]


def test_arm_loop_layers_are_named_as_the_quantized_build_records_them(
    traffic_path, traffic_config, tmp_path
):
    # setup: the ARM loop lowering records one fp32 "rnn" layer but, in int4, "rnn[0]" (its
    # few inputs: per channel) apart from "rnn[1..3]" (groups)
    import torch

    from edgecomp.targets.tflite.target import TfliteTarget
    from edgecomp.train import TrainConfig
    from edgecomp.workflow import dataset_for, train_checkpoint

    if not TfliteTarget.is_available():
        pytest.skip(TfliteTarget.missing_reason())
    torch.set_num_threads(1)
    config = TrainConfig(arch="gru", hparams={"hidden": 64, "layers": 2}, epochs=1)
    model = train_checkpoint(traffic_path, traffic_config, config, tmp_path / "gru").model
    # execute
    result = analyze(
        model, dataset_for(model.spec, traffic_path), target="rpi5-cortex-a76", precision="int4"
    )
    # assert
    assert "rnn" not in result.quantizable and "rnn[0]" in result.quantizable
    assert all(len(result.increase(name)) == model.spec.horizon for name in result.quantizable)
