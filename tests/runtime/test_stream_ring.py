"""The stream's ring window and missing-value counts, and predict's fused checks (toy artifact)."""

from __future__ import annotations

import numpy as np
import pytest

import edgecomp_runtime as ecr
from edgecomp_runtime.errors import InputError
from edgecomp_runtime.readings import finite

T0 = 1_700_000_000.0
PERIOD = 900.0  # the toy artifact's spec.period_s


@pytest.fixture
def model(make_artifact):
    return ecr.load(make_artifact())


def test_window_after_wraps_gaps_and_late_readings(model, toy):
    # setup: readings over several ring wraps, slots skipped, a late reading filling a gap
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(5 * toy.input_len, len(toy.features)))
    skipped = {7, 8, 20}
    stream = model.stream()
    expected = {}
    # execute
    for i, row in enumerate(rows):
        if i in skipped:
            continue
        stream.push(T0 + i * PERIOD, row)
        expected[i] = row
        if i == 9:  # slot 8 arrives late
            stream.push(T0 + 8 * PERIOD, rows[8])
            expected[8] = rows[8]
    window = stream.window
    # assert: oldest first, NaN only for the slot that never came
    last = len(rows) - 1
    want = np.stack(
        [
            expected.get(i, np.full(len(toy.features), np.nan))
            for i in range(last - toy.input_len + 1, last + 1)
        ]
    )
    np.testing.assert_array_equal(window, want)
    assert stream._nans == 0 and stream.stats["late"] == 1


def test_missing_counts_follow_readings_in_and_out_of_the_window(model, toy):
    # setup
    L, F = toy.input_len, len(toy.features)
    rows = np.random.default_rng(4).normal(size=(2 * L, F))
    rows[1, 0] = np.nan
    stream = model.stream()
    counts = []
    # execute
    for i, row in enumerate(rows):
        stream.push(T0 + i * PERIOD, row)
        counts.append(stream._nans)
    stream.push(T0 + (2 * L + 2) * PERIOD, rows[0])  # a skipped slot: F missing values
    # assert: the count equals the window's NaNs at every step
    assert counts[0] == (L - 1) * F and counts[1] == (L - 2) * F + 1
    assert counts[L] == 1 and counts[L + 1] == 0  # the NaN of slot 1 leaves after slot L + 1
    assert stream._nans == int(np.isnan(stream.window).sum()) == 2 * F


def test_gap_longer_than_the_window_restarts_it(model, toy):
    # setup
    L, F = toy.input_len, len(toy.features)
    rows = np.random.default_rng(5).normal(size=(L, F))
    stream = model.stream()
    for i, row in enumerate(rows):
        stream.push(T0 + i * PERIOD, row)
    # execute
    y = stream.push(T0 + (3 * L) * PERIOD, rows[0])
    # assert
    assert y is None and stream._nans == (L - 1) * F
    np.testing.assert_array_equal(stream.window[-1], rows[0])
    assert np.isnan(stream.window[:-1]).all()


@pytest.mark.parametrize(
    ("value", "message"),
    [(np.inf, "infinite value at batch row 0, step 2, feature"), (1e39, "out of float32 range")],
)
def test_predict_still_refuses_infinities_and_overflow_naming_the_feature(
    model, toy, value, message
):
    # setup
    window = toy.window(seed=9).astype(np.float64)
    window[2, 1] = value
    # execute / assert
    with pytest.raises(InputError, match=message) as info:
        model.predict(window)
    assert toy.features[1] in str(info.value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_predict_scales_like_the_formula_for_either_dtype(model, toy, dtype):
    # setup
    window = toy.window(seed=10).astype(dtype)
    # execute
    z = model.scale_window(window)
    # assert
    mean, inv_std = model._scalers[np.dtype(dtype).type]
    np.testing.assert_array_equal(z, ((window - mean) * inv_std).astype(np.float32))
    out = np.empty(window.shape, np.float32)
    assert model.scale_window(window, out=out) is out
    np.testing.assert_array_equal(out, z)


def test_finite_checks_every_value_even_when_the_sum_overflows():
    big = np.full(4, 3e38, dtype=np.float32)  # finite, but their float32 sum is inf
    assert finite(big)
    assert not finite(np.array([1.0, np.nan], dtype=np.float32))
    assert not finite(np.array([np.inf, -np.inf], dtype=np.float32))
    assert not finite(np.array([[1.0], [np.inf]], dtype=np.float32))
