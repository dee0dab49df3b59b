"""Stations that are down: a too-sparse column filled with its training mean, not a refused
window (``DataConfig.sparse_columns="fill"``), the same in data preparation and the runtime; the
graph model's highway, node bias and dropout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import edgecomp_runtime
from edgecomp.data import DataConfig, prepare
from edgecomp.frontend import reference_predict
from edgecomp.models import ModelError, build_model, complete_spec, resolve_hparams
from edgecomp.pipeline import BuildConfig, build
from edgecomp.spec import Model, ModelSpec
from edgecomp_runtime.errors import MissingValueError
from edgecomp_runtime.preprocess import impute_window

LATE = Path(__file__).parent / "data" / "bixi_late_start.csv"  # 6 of 14 stations open late
STATIONS = tuple(c for c in LATE.read_text().splitlines()[0].split(",") if c.startswith("st_"))
POLICY = {"interpolate_limit": 2, "then": "ffill", "max_missing_fraction": 0.5}


def test_runtime_fills_a_sparse_column_with_its_fill_value():
    # setup: column 1 all missing, column 0 one gap
    x = np.array([[[1.0, np.nan], [np.nan, np.nan], [3.0, np.nan], [4.0, np.nan]]])
    fill = {**POLICY, "sparse_columns": "fill", "fill": [10.0, 7.5]}
    # execute
    out = impute_window(x, fill, features=["a", "b"])
    # assert: the sparse column is its fill value, the other interpolated; without fill: refused
    np.testing.assert_array_equal(out[0, :, 1], [7.5] * 4)
    np.testing.assert_array_equal(out[0, :, 0], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(MissingValueError, match="feature 'b'"):
        impute_window(x, POLICY, features=["a", "b"])


def test_fill_keeps_the_windows_that_refuse_leaves_out():
    # setup
    base = {"input_len": 14, "horizon": 7, "split": (0.6, 0.2, 0.2), "targets": STATIONS}
    # execute
    refused = prepare(LATE, DataConfig(**base))
    filled = prepare(LATE, DataConfig(**base, sparse_columns="fill"))
    # assert: every window kept; late stations' inputs at their mean (0 scaled), targets unobserved
    total = refused.left_out["train"]["of"]
    assert refused.left_out["train"]["windows"] == 45 and len(refused.train) == total - 45
    assert filled.left_out["train"]["windows"] == 0 and len(filled.train) == total
    late = filled.features.index("st_6078")
    assert np.all(filled.train.x[0, :, late] == 0.0)
    assert not filled.train.y_observed[0, :, late].any()
    assert filled.imputation["sparse_columns"] == "fill"
    np.testing.assert_allclose(filled.imputation["fill"], filled.mean)


def _tiny_graph(dataset) -> Model:
    hparams = resolve_hparams("stgnn", {"channels": 4, "highway": True, "node_bias": True})
    hparams["globals"] = ["mean_temp_c", "holiday"]
    spec = complete_spec(ModelSpec(arch="stgnn", hparams=hparams, **dataset.spec_fields()))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Model(build_model(spec).eval(), spec, "test")


def test_runtime_forecasts_windows_with_a_station_down_as_trained(tmp_path):
    # setup: a tiny graph model on the fill-mode data; raw windows where late stations are NaN
    config = DataConfig(14, 7, split=(0.6, 0.2, 0.2), targets=STATIONS, sparse_columns="fill")
    dataset = prepare(LATE, config)
    model = _tiny_graph(dataset)
    raw = dataset.raw_inputs("train")[:5]
    assert np.isnan(raw).all(axis=1).any()  # some station has no value in these windows
    # execute
    path = build(model, dataset, BuildConfig(precision="fp32"), tmp_path / "a").path
    out = edgecomp_runtime.load(path).predict(raw)
    # assert: the runtime's forecast equals torch's on the prepared (filled) windows
    ref = dataset.unscale_targets(reference_predict(model, dataset.train.x[:5]))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-3)
    _assert_short_fill_refused(path, tmp_path / "bad.edgepkg")


def _assert_short_fill_refused(path: Path, bad: Path) -> None:
    """An artifact whose fill values do not cover its features is refused at load, named."""
    import json
    import zipfile

    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "manifest.json":
                manifest = json.loads(data)
                manifest["spec"]["imputation"]["fill"].pop()
                data = json.dumps(manifest).encode()
            dst.writestr(item, data)
    with pytest.raises(Exception, match=r"spec\.imputation\.fill"):
        edgecomp_runtime.load(bad)


def test_highway_starts_at_the_seasonal_forecast():
    # setup: untrained, zero head: the model is its residual base
    dataset = prepare(LATE, DataConfig(14, 7, split=(0.6, 0.2, 0.2), targets=STATIONS))
    hparams = {"channels": 4, "highway": True, "zero_head": True, "seasonal_residual": 7}
    hparams = resolve_hparams("stgnn", hparams)
    hparams["globals"] = ["mean_temp_c", "holiday"]
    spec = complete_spec(ModelSpec(arch="stgnn", hparams=hparams, **dataset.spec_fields()))
    module = build_model(spec).eval()
    x = torch.from_numpy(dataset.test.x)
    # execute
    with torch.no_grad():
        out = module(x).numpy()
    # assert: the value one week earlier, per target; a non-boolean flag is refused
    np.testing.assert_allclose(out, dataset.test.x[:, 7:14, module.target_index.numpy()], atol=1e-6)
    with pytest.raises(ModelError, match="highway"):
        build_model(spec.__class__(**{**spec.__dict__, "hparams": {**hparams, "highway": 1}}))
