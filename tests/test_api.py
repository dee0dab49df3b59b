"""The Python API (edgecomp.api) end to end on real data, and the example that uses only it."""

from __future__ import annotations

import json

import pytest

from edgecomp import api

LAYOUT = {"id_col": "detector", "value_cols": ("total",)}


@pytest.mark.target
def test_api_trains_builds_benches_and_reports(traffic_path, tmp_path):
    pytest.importorskip("onnxruntime")
    # execute
    dataset = api.load_data(traffic_path, input_len=16, horizon=4, **LAYOUT)
    checkpoint = api.train(
        traffic_path,
        tmp_path / "gru",
        arch="gru",
        input_len=16,
        horizon=4,
        data_options=LAYOUT,
        hparams={"hidden": 8, "layers": 1},
        epochs=1,
    )
    artifact = api.build(checkpoint, traffic_path, tmp_path / "gru.edgepkg")
    benches = api.bench(
        [artifact], data=traffic_path, batch_sizes=(1,), min_iters=20, min_seconds=0.1, memory=False
    )
    report = api.report(benches, tmp_path / "report")
    # assert
    assert len(dataset.test) > 0 and dataset.targets == dataset.features
    assert (checkpoint / "spec.json").is_file() and artifact.is_file()
    chose = json.loads((checkpoint / "eval.json").read_text())["calendar"]  # auto, as the CLI
    assert chose["tried"] and set(chose["chosen"]) <= set(chose["tried"])
    assert len(benches) == 1 and "b1" in benches[0]["latency"]
    written = json.loads((tmp_path / "report" / "report.json").read_text())
    assert written["rows"] == report["rows"] and len(report["rows"]) == 1


def test_api_refuses_unknown_options(traffic_path):
    with pytest.raises(TypeError, match="no_such_option"):
        api.load_data(traffic_path, no_such_option=1)


@pytest.mark.parametrize("value", ["sometimes", 3, ()])
def test_api_train_refuses_a_bad_calendar(traffic_path, tmp_path, value):
    with pytest.raises(ValueError, match="calendar"):
        api.train(traffic_path, tmp_path / "m", calendar=value, data_options=LAYOUT, epochs=1)
    assert not (tmp_path / "m").exists()


def test_api_train_calendar_names_and_off(traffic_path, tmp_path):
    common = {"input_len": 16, "horizon": 4, "data_options": LAYOUT, "epochs": 1}
    small = {"hparams": {"channels": 4}, "arch": "tcn"}
    named = api.train(traffic_path, tmp_path / "named", calendar="hour,dow", **common, **small)
    off = api.train(traffic_path, tmp_path / "off", calendar="off", **common, **small)
    spec_named = json.loads((named / "spec.json").read_text())["features"]
    spec_off = json.loads((off / "spec.json").read_text())["features"]
    assert {"dow_sin@+4", "hour_cos@+4"} <= set(spec_named)
    assert not [f for f in spec_off if "@+" in f]
