"""Forecasts near float32's largest value are checked without a numpy warning: under ``python -W
error`` the finite-forecast check (``readings.finite``) must answer, not raise RuntimeWarning."""

from __future__ import annotations

import numpy as np
import pytest

import edgecomp_runtime as ecr
from edgecomp_runtime.readings import finite

pytestmark = pytest.mark.filterwarnings("error")  # any numpy RuntimeWarning fails the test


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_values_whose_sum_overflows_are_finite(dtype):
    # setup: each value finite, their sum beyond the dtype's range
    top = float(np.finfo(dtype).max)
    y = np.full((8, 22), top / 4, dtype=dtype)
    # execute / assert
    assert finite(y) is True
    assert finite(-y) is True


@pytest.mark.parametrize(
    "values", [[np.inf, -np.inf, 1.0], [np.nan, 1.0], [-np.inf, 2.0], [3e38, 3e38, np.inf]]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_or_infinite_values_are_not_finite(values, dtype):
    assert finite(np.array(values, dtype=dtype)) is False


def test_predict_a_series_near_float32_max_answers_without_a_warning(make_artifact, toy):
    # setup: target 'c' lives near 3e38, so the raw forecast values sum past float32's range
    model = ecr.load(make_artifact(manifest={"spec.scaler.mean": [10.0, -2.0, 3.0e38]}))
    window = toy.window(seed=2)
    window[:, 2] = 3.0e38 + window[:, 2]
    for batch in (None, 2):
        given = window if batch is None else np.stack([window] * batch)
        # execute
        out = model.predict(given)
        # assert: a finite forecast near the series' level
        assert np.isfinite(out).all()
        assert np.abs(out[..., 0] / 3.0e38 - 1).max() < 1e-3


@pytest.mark.parametrize("mode", ["auto", "windowed"])
def test_stream_a_series_near_float32_max_answers_without_a_warning(make_artifact, toy, mode):
    # setup
    model = ecr.load(make_artifact(manifest={"spec.scaler.mean": [10.0, -2.0, 3.0e38]}))
    window = toy.window(seed=2)
    window[:, 2] = 3.0e38 + window[:, 2]
    stream = model.stream(mode=mode)
    # execute
    out = [stream.push(900.0 * i, row) for i, row in enumerate(window)]
    # assert
    assert out[-1] is not None and np.isfinite(out[-1]).all()
    np.testing.assert_allclose(out[-1], model.predict(window), rtol=1e-5)
