"""Known-future inputs end to end: lead channels trained, exported, rebuilt by the runtime."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from edgecomp.data import DataConfig, config_from_spec, prepare
from edgecomp_runtime import load
from edgecomp_runtime.errors import InputError

torch.set_num_threads(1)
L, H = 12, 4


def _demand(path: Path, n: int = 400) -> Path:
    """Hourly demand that drops on holidays, with a True/False holiday flag."""
    t = pd.date_range("2024-03-01", periods=n, freq="h")
    holiday = (np.arange(n) // 24) % 6 == 0
    rng = np.random.default_rng(0)
    demand = 50 + 20 * np.sin(np.arange(n) * 2 * np.pi / 24) - 30 * holiday + rng.normal(0, 2, n)
    df = pd.DataFrame({"time": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "demand": demand})
    df["holiday"] = np.where(holiday, "True", "False")
    df.to_csv(path, index=False)
    return path


def _config() -> DataConfig:
    return DataConfig(
        input_len=L, horizon=H, targets=("demand",), calendar=("hour",), future_cols=("holiday",)
    )


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    from edgecomp.pipeline import BuildConfig, build
    from edgecomp.train import TrainConfig
    from edgecomp.workflow import train_checkpoint

    tmp = tmp_path_factory.mktemp("future")
    path = _demand(tmp / "d.csv")
    config = TrainConfig(arch="gru", hparams={"hidden": 8, "layers": 1}, epochs=2)
    outcome = train_checkpoint(path, _config(), config, tmp / "ckpt")
    dataset = prepare(path, _config())
    built = build(outcome.model, dataset, BuildConfig(precision="fp32"), tmp / "f.edgepkg")
    return built.path, dataset


def test_lead_channel_holds_the_declared_column_h_steps_ahead(tmp_path):
    # setup
    ds = prepare(_demand(tmp_path / "d.csv"), _config())
    # execute
    x = ds.raw_inputs("train", imputed=True)
    # assert
    assert ds.features == ["demand", "holiday", "hour_sin@+4", "hour_cos@+4", "holiday@+4"]
    starts = ds.train.starts
    np.testing.assert_array_equal(x[:, :, 4], ds.values[starts[:, None] + np.arange(L) + H, 1])
    assert set(np.unique(x[:, :, 1])) == {0.0, 1.0}
    rebuilt = config_from_spec({"arch": "x", **ds.spec_fields()})
    assert rebuilt.features == ("demand", "holiday")
    assert (rebuilt.calendar, rebuilt.future_cols) == (("hour",), ("holiday",))


def test_runtime_builds_the_lead_channels_from_times_and_future(artifact):
    # setup
    path, ds = artifact
    model = load(path)
    raw = ds.raw_inputs("test", imputed=True)
    starts = ds.test.starts
    times = ds.raw.index.to_numpy()[starts[:, None] + np.arange(L)]
    ahead = ds.values[starts[:, None] + L + np.arange(H), 1]
    # execute
    full = model.predict(raw)
    sensors = model.predict(raw[:, :, :2], times=times, future={"holiday": ahead})
    one = model.predict(raw[0, :, :2], times=times[0], future={"holiday": ahead[0]})
    # assert: the same forecasts whether the caller or the runtime builds the lead channels
    np.testing.assert_allclose(sensors, full, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(one, full[0], rtol=1e-5, atol=1e-4)
    assert ds.features == model.features


def test_missing_known_future_values_are_refused_never_filled(artifact):
    # setup
    path, ds = artifact
    model = load(path)
    window = ds.raw_inputs("test", imputed=True)[0, :, :2]
    times = ds.raw.index.to_numpy()[ds.test.starts[0] + np.arange(L)]
    # execute / assert
    with pytest.raises(
        InputError, match=r"future= lacks the known-future column\(s\) \['holiday'\]"
    ):
        model.predict(window, times=times)
    with pytest.raises(InputError, match="pass times="):
        model.predict(window, future={"holiday": np.zeros(H)})
    with pytest.raises(InputError, match=r"future\['holiday'\] must be 4 finite values"):
        model.predict(window, times=times, future={"holiday": [0.0, np.nan, 0.0, 1.0]})


def _stream_vs_predict(model, ds, future_cols: tuple[str, ...], mode: str = "auto"):
    """Push the test split's rows (ISO times, next-H values of the declared columns) one at a
    time; return (stream forecasts, predict on the same windows) stacked."""
    start, n = int(ds.test.starts[0]), 3 * L
    index, values = ds.raw.index[start : start + n + H], ds.values[start : start + n + H]
    sensors = values[:, : len(model.features) - len(model.spec["future"]["features"])]
    cols = [ds.features.index(c) for c in future_cols]
    stream = model.stream(max_ahead_s=math.inf, mode=mode)
    got, want = [], []
    for r in range(n):
        ahead = {c: values[r + 1 : r + 1 + H, k] for c, k in zip(future_cols, cols, strict=True)}
        out = stream.push(f"{index[r].isoformat()}Z", sensors[r], future=ahead or None)
        if r < L - 1:
            assert out is None
            continue
        rows = slice(r - L + 1, r + 1)
        times = index[rows].to_numpy()
        want.append(model.predict(sensors[rows], times=times, future=ahead or None))
        got.append(out)
    return np.stack(got), np.stack(want)


def test_stream_equals_predict_for_a_calendar_and_future_cols_model(artifact):
    # setup
    path, ds = artifact
    model = load(path)
    # execute
    got, want = _stream_vs_predict(model, ds, ("holiday",))
    # assert: equal arrays, and the calendar channels matter (other times, other forecasts)
    np.testing.assert_array_equal(got, want)
    assert len(got) == 2 * L + 1
    window = ds.values[ds.test.starts[0] : ds.test.starts[0] + L, :2]
    times = ds.raw.index[ds.test.starts[0] : ds.test.starts[0] + L].to_numpy()
    ahead = {"holiday": np.zeros(H)}
    shifted = model.predict(window, times=times + np.timedelta64(6, "h"), future=ahead)
    assert not np.array_equal(shifted, model.predict(window, times=times, future=ahead))


@pytest.fixture(scope="module")
def calendar_artifact(tmp_path_factory):
    from edgecomp.pipeline import BuildConfig, build
    from edgecomp.train import TrainConfig
    from edgecomp.workflow import train_checkpoint

    tmp = tmp_path_factory.mktemp("calendar")
    path = _demand(tmp / "d.csv")
    config = DataConfig(input_len=L, horizon=H, targets=("demand",), calendar=("hour", "dow"))
    hparams = {"channels": 8, "kernel": 2, "dilations": [1, 2]}  # receptive field 7 <= L
    train = TrainConfig(arch="tcn", hparams=hparams, epochs=1)
    outcome = train_checkpoint(path, config, train, tmp / "ckpt")
    dataset = prepare(path, config)
    stream = BuildConfig(precision="fp32", options={"stream": True})  # with a step model
    built = build(outcome.model, dataset, stream, tmp / "c.edgepkg")
    return built.path, dataset


def test_stream_equals_predict_for_a_calendar_model(calendar_artifact):
    # setup
    path, ds = calendar_artifact
    model = load(path)
    # execute
    got, want = _stream_vs_predict(model, ds, (), mode="windowed")
    # assert
    np.testing.assert_array_equal(got, want)
    assert model.spec["future"]["columns"] == [] and len(got) == 2 * L + 1


def test_a_calendar_model_streams_incrementally_through_its_step_model(calendar_artifact):
    # setup: the TCN's step model is exact; each slot's calendar channels never change
    path, ds = calendar_artifact
    model = load(path)
    # execute
    got, want = _stream_vs_predict(model, ds, ())
    # assert
    stream = model.stream()
    assert stream.mode == "incremental" and stream.mode_reason.endswith("exact")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_service_refuses_a_due_forecast_without_its_future_column(artifact):
    import json

    from edgecomp_runtime.serve import Gateway

    # setup
    path, ds = artifact
    model = load(path)
    start = int(ds.test.starts[0])
    index, values = ds.raw.index[start:], ds.values[start:]
    readings = [
        {"t": f"{index[r].isoformat()}Z", "values": values[r, :2].tolist()} for r in range(L + 1)
    ]
    readings[L]["future"] = {"holiday": values[L + 1 : L + 1 + H, 1].tolist()}
    # execute: the first due forecast lacks its future values, the next one has them
    gateway = Gateway(model.stream(max_ahead_s=math.inf))
    forecasts, errors = gateway.handle(json.dumps(readings[:L]).encode())
    again, _ = gateway.handle(json.dumps(readings[L:]).encode())
    # assert
    assert forecasts == [] and len(errors) == 1 and "['holiday']" in errors[0]
    assert gateway.counters["rejected"]["missing_future"] == 1
    times = index[1 : L + 1].to_numpy()
    expected = model.predict(values[1 : L + 1, :2], times=times, future=readings[L]["future"])
    np.testing.assert_allclose(again[0]["forecast"], expected, rtol=1e-6)


def test_runtime_cli_reads_times_and_known_future_rows_from_a_csv(artifact, tmp_path, capsys):
    import json

    from edgecomp_runtime.__main__ import main

    # setup: L rows of readings, then H rows with only the holiday flag (known in advance)
    path, ds = artifact
    start = int(ds.test.starts[3])
    times = ds.raw.index[start : start + L + H]
    values = ds.values[start : start + L + H]
    lines = ["time,demand,holiday"]
    for i, (t, (demand, holiday)) in enumerate(zip(times, values[:, :2], strict=True)):
        cell = "" if i >= L else f"{demand:.6f}"
        lines.append(f"{t.isoformat()}Z,{cell},{bool(holiday)}")
    (tmp_path / "w.csv").write_text("\n".join(lines) + "\n")
    window = np.round(values[:L, :2], 6)
    expected = load(path).predict(
        window, times=times[:L].to_numpy(), future={"holiday": values[L:, 1]}
    )
    # execute
    code = main(["predict", str(path), "--input", str(tmp_path / "w.csv")])
    # assert
    assert code == 0
    np.testing.assert_allclose(json.loads(capsys.readouterr().out)["forecast"], expected, rtol=1e-6)
