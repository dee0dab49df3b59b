"""Values a sensor table may hold that nobody tuned to: a series in small units (3e-8 ± 1e-8)
is scaled by its own std, not called constant and floored at 1e-6; values beyond float32's range
(1e300, a 1e308 error sentinel) are refused naming file, column, timestamp and row, where before
they trained with a numpy overflow warning; a spike's z-score prints as 1.2e+29, not as 30
digits; and values near 1e31 read, scale and window without a numpy warning."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from edgecomp.data import DataConfig, DataError, load_table, prepare
from edgecomp.fl.stats import pooled_scaler, site_moments

CONFIG = DataConfig(input_len=24, horizon=4)


def _series(tmp_path, values, name="s.csv"):
    t = pd.date_range("2024-01-01", periods=len(values), freq="h")
    path = tmp_path / name
    other = 10 + np.sin(np.arange(len(values)) / 5.0)
    pd.DataFrame({"time": t, "v": values, "other": other}).to_csv(path, index=False)
    return path


def _daily(n=400, level=0.0, size=1.0):
    rng = np.random.default_rng(0)
    return level + size * (np.sin(np.arange(n) * 2 * np.pi / 24) + 0.1 * rng.normal(size=n))


def test_a_series_in_small_units_is_scaled_by_its_own_std(tmp_path):
    # setup: 3e-8 ± 1e-8, as a capacitance in farads
    path = _series(tmp_path, _daily(level=3e-8, size=1e-8))
    # execute
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "constant" warning
        ds = prepare(path, CONFIG)
    # assert: scaled to unit variance over the train split, as any other series
    train = ds.values[slice(*ds.bounds["train"]), 0]
    assert ds.std[0] == pytest.approx(train.std())
    assert not any("constant" in n for n in ds.notes)


def test_a_constant_series_is_still_floored_as_before(tmp_path):
    # setup
    path = _series(tmp_path, np.full(400, 0.25))
    # execute
    with pytest.warns(UserWarning, match="constant in the train split.*: v"):
        ds = prepare(path, CONFIG)
    # assert
    assert ds.std[0] == pytest.approx(1e-6)


def test_pooled_federated_scaling_floors_as_prepare_does(tmp_path):
    # setup
    values = np.stack([_daily(level=3e-8, size=1e-8), np.full(400, 7.5)], axis=1)
    # execute
    mean, std = pooled_scaler([site_moments(values[:200]), site_moments(values[200:])])
    # assert
    assert std[0] == pytest.approx(values[:, 0].std())
    assert std[1] == pytest.approx(7.5e-6)


@pytest.mark.parametrize(("where", "value"), [(50, 1e308), (0, -3.5e38), (399, 1e300)])
def test_values_beyond_float32_are_refused_naming_column_time_and_row(tmp_path, where, value):
    # setup
    values = _daily(level=20.0)
    values[where] = value
    path = _series(tmp_path, values)
    stamp = pd.Timestamp("2024-01-01") + pd.Timedelta(hours=where)
    # execute / assert
    with pytest.raises(DataError) as info:
        load_table(path)
    message = str(info.value)
    assert message.startswith(f"{path}: column 'v' has the value {value:.4g}")
    assert f"{stamp.isoformat()} (data row {where + 1})" in message
    assert "beyond the float32 range" in message


def test_values_near_1e31_prepare_without_a_numpy_warning(tmp_path):
    # setup
    path = _series(tmp_path, _daily(level=4e31, size=1e31))
    # execute
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = prepare(path, CONFIG)
    # assert
    assert np.isfinite(ds.train.x).all() and abs(ds.train.x[..., 0].std() - 1) < 0.2


def test_a_spike_z_score_prints_in_a_few_digits(tmp_path):
    # setup
    values = _daily(level=20.0)
    values[390] = 1e30
    path = _series(tmp_path, values)
    # execute
    ds = prepare(path, CONFIG)
    # assert
    note = next(n for n in ds.notes if n.startswith("possible unit spikes"))
    assert "v (z 9.84e+29 at 2024-01-17T06:00:00, value 1e+30)" in note
