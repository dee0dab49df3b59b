"""Forecast bounds on the gateway: spec.output_floor keeps counts non-negative (issue 17 item 6)."""

from __future__ import annotations

import numpy as np
import pytest

from edgecomp_runtime import load
from edgecomp_runtime.errors import ArtifactError
from edgecomp_runtime.transform import clamp_forecast


def _low_windows(toy, n: int = 64) -> np.ndarray:
    """Windows far from the scaler's mean, so the linear toy forecasts values of both signs."""
    rng = np.random.default_rng(3)
    return np.array(toy.mean) + rng.standard_normal((n, toy.input_len, 3)) * 8 * np.array(toy.std)


def test_predict_and_stream_clamp_forecasts_to_the_output_floor(make_artifact, toy):
    # setup: target c clamped at 0, target a unbounded
    plain = load(make_artifact())
    bounded = load(make_artifact(manifest={"spec.output_floor": [0.0, None]}))
    windows = _low_windows(toy)
    # execute
    free, clamped = plain.predict(windows), bounded.predict(windows)
    # assert: the plain model does forecast negative c; the bounded one never does
    assert (free[..., 0] < 0).any() and (free[..., 1] < 0).any()
    assert (clamped[..., 0] >= 0).all()
    np.testing.assert_array_equal(clamped[..., 0], np.maximum(free[..., 0], 0))
    np.testing.assert_array_equal(clamped[..., 1], free[..., 1])
    scaled = np.full((2, toy.horizon, 2), -50.0, np.float32)
    assert (bounded.unscale_forecast(scaled)[..., 0] == 0).all()


@pytest.mark.parametrize("floor", [[0.0], "0", [0.0, "x"], [0.0, float("inf")], [True, None]])
def test_malformed_output_floor_is_refused_at_load_naming_the_field(make_artifact, floor):
    artifact = make_artifact(manifest={"spec.output_floor": floor})
    with pytest.raises(ArtifactError, match="spec.output_floor must be a list of 2 numbers"):
        load(artifact)


def test_clamp_forecast_without_a_floor_returns_the_array_unchanged():
    y = np.array([[-1.0, 2.0]])
    assert clamp_forecast(y, {"targets": ["a", "b"]}) is y and y[0, 0] == -1.0
