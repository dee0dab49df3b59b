"""The stream verdict of an artifact on the native engine measures the native step (what runs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import edgecomp_runtime as ecr
from edgecomp.metrics import horizon_metrics
from edgecomp.pipeline import BuildConfig
from edgecomp.spec import ModelSpec
from edgecomp.workflow import build_artifact, dataset_for
from edgecomp_runtime import native
from edgecomp_runtime.step import step_runner

pytestmark = pytest.mark.skipif(not native.available(), reason="native kernel not built here")

INT8_STREAM = BuildConfig(precision="int8", options={"stream": True})


def _build(checkpoints, traffic_path, root, arch, config=INT8_STREAM):
    torch.set_num_threads(1)
    return build_artifact(str(checkpoints[arch]), traffic_path, config, root / f"{arch}.edgepkg")


@pytest.fixture(scope="module")
def built(tmp_path_factory, traffic_path, traffic_checkpoints):
    """arch -> int8 build result with stream=true (LSTM, GRU: native engine; TCN: not)."""
    root = tmp_path_factory.mktemp("native-stream")
    return {
        arch: _build(traffic_checkpoints, traffic_path, root, arch)
        for arch in ("lstm", "gru", "tcn")
    }


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_native_build_records_the_native_steps_error(built, traffic_path, arch):
    # setup: the artifact's stream as the runtime runs it, over the build's readings
    result = built[arch]
    section = result.manifest["stream"]
    model = ecr.load(result.path)
    runner = step_runner(model, section)
    dataset = dataset_for(ModelSpec.from_dict(model.spec), traffic_path)
    windows, (start, end) = dataset.split("test"), dataset.bounds["test"]
    # execute
    streamed = runner.run(model.scale_window(dataset.values[start:end]).astype(np.float32))
    streamed = streamed[windows.starts - start + model.input_len - 1]
    truth, observed = dataset.raw_targets("test"), windows.y_observed
    got = horizon_metrics(truth, dataset.unscale_targets(streamed), observed=observed)
    # assert: the recorded figures are the native step's; the step model's are the fallback's
    assert result.manifest["recipe"]["lowering"]["engine"] == "native"
    assert runner.native is not None and section["step_path"] == "native"
    np.testing.assert_allclose(section["metrics"]["stream"]["mae"], got["mae"], rtol=1e-5)
    fallback = section["fallback"]
    assert fallback["step_path"] == "step-model" and "fp32 step model" in fallback["note"]
    assert fallback["metrics"]["stream"]["mae"] != section["metrics"]["stream"]["mae"]
    for record in (section, fallback):
        stream, windowed = record["metrics"]["stream"]["mae"], record["metrics"]["windowed"]["mae"]
        within = all(
            s <= w * (1 + record["error_budget"]) for s, w in zip(stream, windowed, strict=True)
        )
        assert record["within_budget"] is within and record["allowed"] is within


def test_a_native_step_that_breaches_the_budget_is_not_allowed(
    built, traffic_path, traffic_checkpoints, tmp_path, monkeypatch
):
    # setup: the native step forecasts 0.5 (scaled units) too high; the step model is untouched
    assert built["lstm"].manifest["stream"]["allowed"]
    step = native.Stepper.step
    monkeypatch.setattr(native.Stepper, "step", lambda self, reading: step(self, reading) + 0.5)
    # execute
    section = _build(traffic_checkpoints, traffic_path, tmp_path, "lstm").manifest["stream"]
    # assert
    assert section["step_path"] == "native" and section["worst_increase"] > 0.01
    assert section["within_budget"] is False and section["allowed"] is False
    assert section["fallback"]["allowed"] is True


@pytest.mark.parametrize(("scale", "allowed"), [(0.9, False), (1.1, True)])
def test_budget_is_gated_on_the_native_steps_figure(
    built, traffic_path, traffic_checkpoints, tmp_path, scale, allowed
):
    # setup: a budget just below / above the native step's measured worst increase
    first = built["gru"].manifest["stream"]
    if first["worst_increase"] <= 0:
        pytest.skip("the native stream is not worse than the windowed model at any step")
    budget = first["worst_increase"] * scale
    config = BuildConfig(precision="int8", options={"stream": True, "stream_error_budget": budget})
    # execute
    section = _build(traffic_checkpoints, traffic_path, tmp_path, "gru", config)
    section = section.manifest["stream"]
    # assert: the same native figure, gated against the new budget
    assert section["worst_increase"] == pytest.approx(first["worst_increase"], rel=1e-9)
    assert section["step_path"] == "native" and section["fallback"]["error_budget"] == budget
    assert section["error_budget"] == budget and section["allowed"] is allowed


@pytest.mark.parametrize("arch", ["tcn", "lstm"])
def test_a_build_off_the_native_engine_measures_the_step_model(
    built, traffic_path, traffic_checkpoints, tmp_path, monkeypatch, arch
):
    # setup: the TCN never runs natively; the LSTM does not where the kernel is not built
    if arch == "lstm":
        monkeypatch.setattr(native, "available", lambda: False)
        result = _build(traffic_checkpoints, traffic_path, tmp_path, arch)
    else:
        result = built[arch]
    section = result.manifest["stream"]
    # assert
    assert result.manifest["recipe"]["lowering"].get("engine") != "native"
    assert section["step_path"] == "step-model" and "fallback" not in section
    assert section["allowed"] is section["within_budget"]
