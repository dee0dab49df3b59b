"""The TCN receptive cone (targets/cone.py) as the ONNX target's ``cone`` candidate lowering."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import edgecomp_runtime as ecr
from edgecomp.models import GRUForecaster, LSTMForecaster, TCNForecaster
from edgecomp.pipeline import BuildConfig
from edgecomp.targets import cone as cone_module
from edgecomp.targets.cone import ConeTCN, applies
from edgecomp.targets.onnx.candidates import LOWERINGS, applicable_lowerings
from edgecomp.targets.onnx.export import export_model
from edgecomp.targets.tflite import lowering as tflite_lowering
from edgecomp.workflow import build_artifact
from helpers.testing import forecaster, run_onnx

pytest.importorskip("onnxruntime", reason="the cone is checked on onnxruntime")

CASES = [  # (features, targets, length, kernel, dilations)
    (5, [0, 3], 48, 3, None),  # the default dilations 1, 2, 4, 8
    (3, [2], 48, 3, [1, 3, 9]),  # dilations that are not powers of two
    (3, None, 30, 2, [1, 9]),  # a stride past the padding
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"L{c[2]}-k{c[3]}-{c[4]}")
def test_the_fp32_cone_graph_equals_torch_per_horizon_step(case):
    # setup
    features, targets, length, kernel, dilations = case
    hparams = {"channels": 6, "kernel": kernel, "dilations": dilations, "residual": True}
    module = forecaster(TCNForecaster, features, targets, length, **hparams)
    x = torch.randn(5, length, features)
    # execute
    proto = export_model(ConeTCN(module).eval(), length, features, opset=17)
    out = run_onnx(proto, x.numpy())
    # assert: every horizon step within 1e-5 of the source TCN in torch
    with torch.no_grad():
        expected = module(x).numpy()
    assert out.shape == expected.shape
    per_step = np.abs(out - expected).max(axis=(0, 2))
    assert per_step.max() <= 1e-5, per_step


def test_the_cone_is_offered_for_tcn_only():
    assert "cone" in LOWERINGS
    assert "cone" in applicable_lowerings(TCNForecaster, "int8")
    assert "cone" in applicable_lowerings(TCNForecaster, "fp32")
    assert "cone" not in applicable_lowerings(TCNForecaster, "int4")
    for cls in (LSTMForecaster, GRUForecaster):
        assert "cone" not in applicable_lowerings(cls, "int8")
        assert not applies(cls, "fp32")


def test_litert_imports_the_shared_cone():
    assert tflite_lowering.ConeTCN is cone_module.ConeTCN
    assert tflite_lowering.cone_plan is cone_module.cone_plan


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_tcn_build_measures_the_cone_and_records_it(
    precision, tmp_path, traffic_path, traffic_checkpoints
):
    # execute: the candidates measured at build (onnxruntime only, for time)
    config = BuildConfig(precision=precision, options={"engine": "onnx"})
    result = build_artifact(
        str(traffic_checkpoints["tcn"]), traffic_path, config, tmp_path / "a.edgepkg"
    )
    # assert: default and cone both measured and passing parity; the faster one chosen
    model = ecr.load(result.path)
    lowering = model.manifest["recipe"]["lowering"]
    measured = lowering["candidates"]["measured"]
    ran = [m for m in measured if m.get("error") != "not applicable"]
    by_name = {m["lowering"]: m for m in ran if m["threads"] == 1}
    assert set(by_name) == {"default", "cone"}
    assert all(m["passed"] and m["latency_ms"] for m in by_name.values())
    chosen = lowering["candidate_lowering"]
    best = min(
        (m for m in measured if m["passed"]),
        key=lambda m: (m["latency_ms"]["b1"] * m["latency_ms"]["b64"]) ** 0.5,
    )
    assert chosen == best["lowering"]
    assert ("tcn_lowering" in lowering) == (chosen == "cone")
    assert lowering["parity"]["max_abs_diff"] < 0.1  # the shipped file, checked against torch


def test_a_named_cone_lowering_builds_an_int8_cone(tmp_path, traffic_path, traffic_checkpoints):
    # execute
    config = BuildConfig(precision="int8", options={"lowering": "cone", "engine": "onnx"})
    result = build_artifact(
        str(traffic_checkpoints["tcn"]), traffic_path, config, tmp_path / "a.edgepkg"
    )
    # assert: the cone shipped, its convolutions static QDQ int8, parity checked against torch
    model = ecr.load(result.path)
    lowering = model.manifest["recipe"]["lowering"]
    assert lowering["candidate_lowering"] == "cone"
    convs = [r for r in model.manifest["layers"] if r["op_type"] == "Conv"]
    assert convs and all(r["precision"] == "int8" for r in convs)
    assert lowering["parity"]["max_abs_diff"] < 0.1
