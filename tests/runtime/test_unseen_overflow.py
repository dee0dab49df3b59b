"""Windows beyond float32's range are refused with InputError and no numpy warning on the way,
so that ``python -W error`` (warnings as errors) still sees the InputError, not a RuntimeWarning.
"""

from __future__ import annotations

import numpy as np
import pytest

import edgecomp_runtime as ecr
from edgecomp_runtime.preprocess import impute_window

pytestmark = pytest.mark.filterwarnings("error")  # any numpy RuntimeWarning fails the test


def _model(make_artifact, toy, warm_batch=None):
    model = ecr.load(make_artifact())
    if warm_batch is not None:  # the fast path has bound the engine at this batch size
        model.predict(toy.window(batch=warm_batch, seed=1))
    return model


@pytest.mark.parametrize("warm_batch", [None, 1, 2])
@pytest.mark.parametrize(
    ("dtype", "value"),
    [(np.float64, 1e300), (np.float64, -1e300), (np.float32, 3e38), (np.float32, -3e38)],
)
def test_a_window_beyond_float32_is_an_input_error_not_a_warning(
    make_artifact, toy, warm_batch, dtype, value
):
    # setup: feature 'b' has std 0.5, so 3e38 scales past float32's largest value
    model = _model(make_artifact, toy, warm_batch)
    window = toy.window(batch=2, seed=3).astype(dtype)
    window[1, 2, 1] = value
    # execute / assert
    with pytest.raises(ecr.InputError, match="'b' is out of float32 range"):
        model.predict(window)


@pytest.mark.parametrize("form", ["list", "single window", "masked"])
def test_other_input_forms_beyond_float32_are_input_errors(make_artifact, toy, form):
    # setup
    model = _model(make_artifact, toy, warm_batch=1)
    window = toy.window(seed=4)
    window[3, 0] = 1e300
    given = {
        "list": window.tolist(),
        "single window": window,
        "masked": np.ma.masked_array(window, mask=np.zeros(window.shape, bool)),
    }[form]
    # execute / assert
    with pytest.raises(ecr.InputError, match="'a' is out of float32 range"):
        model.predict(given)


def test_a_gap_between_huge_readings_is_an_input_error(make_artifact, toy):
    # setup: interpolating across the gap overflows float64 itself
    model = _model(make_artifact, toy, warm_batch=1)
    window = toy.window(seed=5)
    window[1, 2], window[2, 2], window[3, 2] = -1.5e308, np.nan, 1.5e308
    # execute / assert
    with pytest.raises(ecr.InputError, match="'c'"):
        model.predict(window)


def test_imputing_between_huge_readings_gives_a_non_finite_fill_without_a_warning():
    # setup
    window = np.array([[[-1.5e308], [np.nan], [1.5e308], [1.0]]])
    policy = {"interpolate_limit": 2, "then": "ffill", "max_missing_fraction": 0.5}
    # execute
    filled = impute_window(window, policy, features=["x"])
    # assert: the readings kept, the fill left for predict's range check to refuse
    assert filled[0, 0, 0] == -1.5e308 and filled[0, 2, 0] == 1.5e308
    assert not np.isfinite(filled[0, 1, 0])


@pytest.mark.parametrize("out", [False, True])
def test_scale_window_maps_beyond_float32_to_inf_without_a_warning(make_artifact, toy, out):
    # setup
    model = _model(make_artifact, toy)
    window = toy.window(seed=6)
    window[0, 1] = 1e300
    buffer = np.empty(window.shape, np.float32) if out else None
    # execute
    z = model.scale_window(window, out=buffer)
    # assert
    assert z[0, 1] == np.inf and np.isfinite(np.delete(z.ravel(), 1)).all()


def test_in_range_windows_still_forecast_as_the_toy_does(make_artifact, toy):
    # setup
    model = _model(make_artifact, toy, warm_batch=2)
    window = toy.window(batch=2, seed=7)
    # execute
    got = model.predict(window)
    # assert
    np.testing.assert_allclose(got, toy.reference(window), rtol=1e-4, atol=1e-3)


T0 = 1_700_000_000.0


@pytest.mark.parametrize("form", ["array", "list", "dict"])
def test_a_reading_that_scales_beyond_float32_is_refused_at_push(make_artifact, toy, form):
    # setup: 'b' has std 0.5: a sensor's FLT_MAX sentinel is within float32 raw, not scaled
    model = ecr.load(make_artifact())
    rows = toy.window(batch=2, seed=5).reshape(-1, len(toy.features))
    stream = model.stream(max_ahead_s=float("inf"))
    for i, row in enumerate(rows[: toy.input_len]):
        stream.push(T0 + i * 900, row)
    bad = rows[toy.input_len].copy()
    bad[1] = 3.0e38
    given = {"array": bad, "list": bad.tolist(), "dict": dict(zip(toy.features, bad, strict=True))}[
        form
    ]
    # execute
    with pytest.raises(ecr.InputError, match=r"feature 'b' is 3e\+38, beyond the float32 range"):
        stream.push(T0 + toy.input_len * 900, given)
    after = stream.push(T0 + toy.input_len * 900, rows[toy.input_len])
    # assert: the refused reading left the window as it was; the next forecast is predict's
    np.testing.assert_array_equal(after, model.predict(rows[1 : toy.input_len + 1]))


def test_readings_within_the_scaled_range_still_take_the_fast_test(make_artifact, toy):
    # setup: 'a' (mean 10, std 2) may reach 2 * FLT_MAX - 10 below zero once scaled: a large
    # but acceptable value
    model = ecr.load(make_artifact())
    stream = model.stream(max_ahead_s=float("inf"))
    row = np.array([1e38, -2.0, 100.0])
    # execute
    got = stream.push(T0, row)
    # assert
    assert got is None and stream.window[-1, 0] == 1e38
