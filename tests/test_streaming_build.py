"""Step models (edgecomp.streaming): exact incremental TCN, stateful LSTM/GRU measured and gated."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest
import torch

import edgecomp_runtime as ecr
from edgecomp.models import LSTMForecaster, TCNForecaster
from edgecomp.pipeline import BuildConfig
from edgecomp.streaming import StreamBuildError, add_stream, step_module
from edgecomp.workflow import build_artifact, dataset_for
from edgecomp_runtime.step import StepRunner
from edgecomp_runtime.stream import StreamError

STREAM = BuildConfig(precision="fp32", options={"stream": True})


@pytest.fixture(scope="module")
def exact_tcn(tmp_path_factory, traffic_path, traffic_config):
    """A TCN whose receptive field (13) fits the window (16), trained for one epoch."""
    from edgecomp.train import TrainConfig
    from edgecomp.workflow import train_checkpoint

    torch.set_num_threads(1)
    config = TrainConfig(arch="tcn", hparams={"channels": 8, "dilations": [1, 2]}, epochs=1)
    root = tmp_path_factory.mktemp("exact-tcn")
    return train_checkpoint(traffic_path, traffic_config, config, root / "ckpt").path


@pytest.fixture(scope="module")
def built(tmp_path_factory, traffic_path, traffic_checkpoints, exact_tcn):
    """name -> (artifact path, build manifest), built with stream=true."""
    root = tmp_path_factory.mktemp("stream-artifacts")
    sources = {"exact-tcn": exact_tcn, **traffic_checkpoints}
    return {
        name: (result.path, result.manifest)
        for name, source in sources.items()
        for result in [build_artifact(str(source), traffic_path, STREAM, root / f"{name}.edgepkg")]
    }


@pytest.mark.parametrize(
    ("features", "channels", "kernel", "dilations"),
    [(5, 8, 3, [1, 2]), (8, 8, 2, [1, 2, 4]), (3, 4, 4, [1, 2, 4])],  # skip: conv, identity
)
def test_tcn_step_model_equals_the_full_window_in_torch(features, channels, kernel, dilations):
    # setup: a window exactly as long as the receptive field
    torch.manual_seed(0)
    window = 1 + 2 * (kernel - 1) * sum(dilations)
    tcn = TCNForecaster(
        features,
        2,
        window,
        3,
        channels=channels,
        kernel=kernel,
        dilations=dilations,
        target_index=[features - 1, 0],
    ).eval()
    step, state_size, kind = step_module(tcn)
    x = torch.randn(window + 20, features)
    # execute
    state, outs = torch.zeros(1, state_size), []
    with torch.no_grad():
        for row in x:
            y, state = step(row[None], state)
            outs.append(y[0])
        full = tcn(torch.stack([x[i - window + 1 : i + 1] for i in range(window - 1, len(x))]))
    # assert
    assert kind == "tcn-cache" and tcn.receptive_field == window
    torch.testing.assert_close(torch.stack(outs[window - 1 :]), full, rtol=1e-5, atol=1e-5)


def test_exact_tcn_artifact_is_checked_and_recorded(built):
    # setup
    path, manifest = built["exact-tcn"]
    section = manifest["stream"]
    # assert
    assert section["kind"] == "tcn-cache" and section["exact"] and section["allowed"]
    assert section["receptive_field"] == 13
    assert section["metrics"]["reference_max_abs_diff"] <= 1e-4
    assert section["metrics"]["stream"]["mae"] == pytest.approx(
        section["metrics"]["windowed"]["mae"], rel=1e-5
    )
    assert "step.onnx" in zipfile.ZipFile(path).namelist()


@pytest.mark.parametrize("holes", [False, True])
def test_incremental_stream_equals_predict_on_the_same_window(built, traffic_path, holes):
    # setup: the test split's readings as a gateway sees them, optionally with missing values
    path, _ = built["exact-tcn"]
    model = ecr.load(path)
    rows, period = _test_readings(model, traffic_path)
    if holes:
        rows[np.random.default_rng(0).random(rows.shape) < 0.05] = np.nan
    stream = model.stream()
    # execute
    pairs = []
    for i, row in enumerate(rows):
        y = stream.push(i * period, row)
        if y is not None:
            pairs.append((y, model.predict(stream.window)))
    # assert
    assert stream.mode == "incremental" and len(pairs) == len(rows) - model.input_len + 1
    got, want = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-3)
    assert (stream.stats["replays"] > 1) == holes  # without holes: one replay, the first window


@pytest.mark.parametrize("name", ["exact-tcn", "lstm"])
def test_incremental_stream_resumes_from_its_state_file(built, traffic_path, tmp_path, name):
    # setup: a stream saved after 40 readings, some values missing
    model = ecr.load(built[name][0])
    rows, period = _test_readings(model, traffic_path)
    rows[np.random.default_rng(1).random(rows.shape) < 0.02] = np.nan
    stream = model.stream()
    for i in range(40):
        stream.push(i * period, rows[i])
    path = stream.save(tmp_path / "state.npz")
    # execute
    resumed = model.stream(resume=path)
    pairs = [
        (stream.push(i * period, rows[i]), resumed.push(i * period, rows[i])) for i in range(40, 80)
    ]
    # assert: the same state, so the same forecasts and the same replays
    assert resumed.mode == "incremental"
    assert all(np.array_equal(a, b) for a, b in pairs)
    assert resumed.stats == stream.stats


@pytest.mark.parametrize("arch", ["lstm", "gru", "tcn"])
def test_stateful_error_is_measured_against_the_windowed_model(built, arch):
    # setup: traffic_checkpoints' TCN has the automatic dilations: receptive field 29 > L = 16
    _, manifest = built[arch]
    section, horizon = manifest["stream"], manifest["spec"]["horizon"]
    metrics = section["metrics"]
    # assert
    assert section["exact"] is False and metrics["split"] == "test"
    for name in ("stream", "windowed"):
        assert len(metrics[name]["mae"]) == horizon and all(np.isfinite(metrics[name]["mae"]))
    assert len(metrics["deviation_mae"]) == horizon and min(metrics["deviation_mae"]) > 0
    budget = section["error_budget"]
    within = all(
        s <= w * (1 + budget)
        for s, w in zip(metrics["stream"]["mae"], metrics["windowed"]["mae"], strict=True)
    )
    assert section["within_budget"] is within and section["allowed"] is within


def test_stateful_first_forecast_equals_the_windowed_one(built, traffic_path):
    # setup: from a zero state, L readings are exactly the windowed computation
    path, _ = built["lstm"]
    model = ecr.load(path)
    rows, period = _test_readings(model, traffic_path)
    stream = model.stream(mode="incremental")
    # execute
    forecasts = [stream.push(i * period, row) for i, row in enumerate(rows[: model.input_len])]
    # assert
    np.testing.assert_allclose(forecasts[-1], model.predict(rows[: model.input_len]), atol=2e-3)


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_recurrent_streams_run_the_numpy_kernel_and_match_the_onnx_step_model(
    built, traffic_path, arch
):
    # setup: the stream (kernel) and the ONNX step model fed the same scaled readings
    path, manifest = built[arch]
    model = ecr.load(path)
    kernel = manifest["stream"]["kernel"]
    rows, period = _test_readings(model, traffic_path)
    stream = model.stream()
    onnx_step = StepRunner(model.file("step.onnx"), manifest["stream"], threads=1)
    # execute
    got = [stream.push(i * period, row) for i, row in enumerate(rows[:60])]
    want = onnx_step.run(model.scale_window(rows[:60]))
    # assert
    assert kernel["file"] in [f["name"] for f in manifest["files"]] and kernel["cell"] == arch
    assert 0 <= kernel["max_abs_diff"] <= 1e-4 and stream._runner.kernel is not None
    assert not np.isnan(rows[:60]).any()  # no imputation: the stream fed the rows as they are
    got = np.stack(got[model.input_len - 1 :])
    np.testing.assert_allclose(got, model.unscale_forecast(want[model.input_len - 1 :]), atol=1e-3)


def test_stream_uses_the_step_model_only_when_allowed(built, tmp_path):
    # setup: the same artifact, unpacked, its manifest saying the step model is not allowed
    path, _ = built["lstm"]
    folder = tmp_path / "unpacked"
    zipfile.ZipFile(path).extractall(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["stream"]["allowed"] = False
    (folder / "manifest.json").write_text(json.dumps(manifest))
    model = ecr.load(folder)
    # execute
    stream = model.stream()
    # assert
    assert stream.mode == "windowed" and "does not allow its step model" in stream.mode_reason
    with pytest.raises(StreamError, match="cannot stream incrementally"):
        model.stream(mode="incremental")
    shutil.rmtree(folder)


def test_without_onnxruntime_for_the_step_model_auto_falls_back(built, monkeypatch):
    # setup: the artifact loads, then onnxruntime "disappears" for the step model
    import edgecomp_runtime.engines.onnxruntime as engine

    model = ecr.load(built["exact-tcn"][0])

    def missing():
        raise ecr.EngineUnavailableError("onnxruntime cannot be imported (test)")

    monkeypatch.setattr(engine, "_import_onnxruntime", missing)
    # execute
    stream = model.stream()
    # assert
    assert stream.mode == "windowed" and "needs onnxruntime" in stream.mode_reason
    with pytest.raises(StreamError, match="needs onnxruntime"):
        model.stream(mode="incremental")


def test_build_without_the_option_adds_no_step_model(tmp_path, traffic_path, traffic_checkpoints):
    # execute
    result = build_artifact(
        str(traffic_checkpoints["gru"]), traffic_path, BuildConfig(precision="fp32"), tmp_path / "a"
    )
    # assert
    assert "stream" not in result.manifest
    names = [f["name"] for f in result.manifest["files"] if f["name"] != "model.native"]
    assert names == ["MODEL_CARD.md", "model.onnx"]  # (model.native: the native engine's)
    assert ecr.load(result.path).stream().mode_reason.startswith("the artifact has no step model")


def test_step_module_refuses_other_modules():
    with pytest.raises(StreamBuildError, match="no step model for Linear"):
        step_module(torch.nn.Linear(3, 3))


@pytest.mark.parametrize("budget", [-0.1, "1%", True])
def test_bad_error_budget_is_refused(budget):
    with pytest.raises(StreamBuildError, match="stream_error_budget"):
        add_stream(None, None, {}, {}, options={"stream_error_budget": budget})


def test_step_runner_refuses_a_model_with_other_inputs():
    # setup: the windowed LSTM graph is not a step model
    from edgecomp.targets.onnx.export import export_model

    lstm = LSTMForecaster(3, 3, 8, 2, hidden=4, layers=1).eval()
    data = export_model(lstm, 8, 3, opset=17).SerializeToString()
    section = {"step_file": "step.onnx", "state_size": 8}
    # execute / assert
    with pytest.raises(ecr.ArtifactError, match="step model inputs are"):
        StepRunner(data, section, threads=1)


def _test_readings(model, traffic_path):
    """Raw readings [T, F] of the test split (imputed) and the sampling period."""
    from edgecomp.spec import ModelSpec

    dataset = dataset_for(ModelSpec.from_dict(model.spec), traffic_path)
    start, end = dataset.bounds["test"]
    return dataset.values[start:end].copy(), model.spec["period_s"]
