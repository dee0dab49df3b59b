"""impute_window (FORMAT.md step 2), scale and unscale."""

from __future__ import annotations

import numpy as np
import pytest

from edgecomp_runtime import InputShapeError, MissingValueError
from edgecomp_runtime.preprocess import impute_window, scale, unscale

NAN = np.nan


def _policy(limit: int = 2, max_fraction: float = 0.9) -> dict:
    return {"interpolate_limit": limit, "then": "ffill", "max_missing_fraction": max_fraction}


def _impute_column(values: list[float], **policy) -> list[float]:
    x = np.array(values, dtype=np.float64)[None, :, None]
    return impute_window(x, _policy(**policy), features=["v"])[0, :, 0].tolist()


@pytest.mark.parametrize(
    ("column", "limit", "expected"),
    [
        ([1, NAN, 5], 2, [1, 3, 5]),  # interior gap within the limit: linear
        ([0, NAN, NAN, NAN, 8], 1, [0, 2, 2, 2, 8]),  # first step interpolated, rest carried
        ([0, NAN, NAN, NAN, 8], 2, [0, 2, 4, 4, 8]),
        ([0, NAN, NAN, NAN, 8], 3, [0, 2, 4, 6, 8]),
        ([0, NAN, 4], 0, [0, 0, 4]),  # limit 0: forward fill only
        ([1, 2, NAN, NAN], 2, [1, 2, 2, 2]),  # trailing gap: carried forward
        ([NAN, NAN, 3, 5], 2, [3, 3, 3, 5]),  # leading gap: back filled
        ([NAN, 2, NAN, NAN, 8, 9], 2, [2, 2, 4, 6, 8, 9]),
        ([NAN, 1, NAN, NAN, NAN, NAN, NAN, 13, NAN], 2, [1, 1, 3, 5, 5, 5, 5, 13, 13]),
    ],
)
def test_imputation_fills_exactly_as_specified(column, limit, expected):
    assert _impute_column(column, limit=limit) == pytest.approx(expected, abs=1e-12)


def test_window_without_nan_is_returned_as_an_equal_float64_copy():
    x = np.arange(12, dtype=np.int32).reshape(1, 4, 3)
    out = impute_window(x, _policy(), features=["a", "b", "c"])
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, x)
    assert not np.shares_memory(out, x)


def test_columns_are_imputed_independently_per_batch_row():
    # setup
    x = np.array(
        [
            [[1.0, NAN], [NAN, 2.0], [3.0, 4.0]],
            [[NAN, 1.0], [5.0, 1.0], [7.0, NAN]],
        ]
    )
    # execute
    out = impute_window(x, _policy(), features=["a", "b"])
    # assert
    expected = [[[1, 2], [2, 2], [3, 4]], [[5, 1], [5, 1], [7, 1]]]
    np.testing.assert_allclose(out, expected)


def test_input_is_not_modified():
    x = np.array([[[1.0], [NAN], [3.0]]])
    before = x.copy()
    impute_window(x, _policy(), features=["a"])
    np.testing.assert_array_equal(x, before)  # NaN compares equal here


def test_missing_fraction_at_the_limit_is_allowed():
    assert _impute_column([1, NAN, NAN, 4], max_fraction=0.5) == pytest.approx([1, 2, 3, 4])


def test_missing_fraction_beyond_the_limit_names_feature_row_and_fraction():
    # setup: row 1, feature 'speed' misses 3 of 4 values
    x = np.ones((2, 4, 2))
    x[1, :3, 1] = NAN
    # execute / assert
    with pytest.raises(MissingValueError) as info:
        impute_window(x, _policy(max_fraction=0.5), features=["count", "speed"])
    message = str(info.value)
    assert "feature 'speed' (column 1), batch row 1" in message
    assert "3 of 4 values missing (75.0%)" in message
    assert "50.0%" in message


@pytest.mark.parametrize("max_fraction", [0.5, 1.0])
def test_all_missing_column_is_refused_even_when_the_policy_allows_everything(max_fraction):
    x = np.ones((1, 3, 2))
    x[0, :, 0] = NAN
    with pytest.raises(MissingValueError, match="feature 'a' \\(column 0\\), batch row 0"):
        impute_window(x, _policy(max_fraction=max_fraction), features=["a", "b"])


def test_wrong_rank_or_feature_count_is_refused():
    with pytest.raises(InputShapeError, match="expected \\[batch, L, 2\\]"):
        impute_window(np.ones((4, 2)), _policy(), features=["a", "b"])
    with pytest.raises(InputShapeError):
        impute_window(np.ones((1, 4, 3)), _policy(), features=["a", "b"])


def test_matches_pandas_interpolate_then_ffill_then_bfill():
    pd = pytest.importorskip("pandas", reason="cross-check against pandas needs pandas")
    # setup: random columns with random gaps, all keeping at least one value
    rng = np.random.default_rng(0)
    for trial in range(200):
        length, limit = int(rng.integers(2, 30)), int(rng.integers(0, 5))
        column = rng.standard_normal(length)
        column[rng.random(length) < rng.random()] = NAN
        if np.isnan(column).all():
            continue
        # execute
        ours = _impute_column(list(column), limit=limit, max_fraction=1.0)
        series = pd.Series(column)
        if limit > 0:  # pandas refuses limit=0; the policy then means no interpolation
            series = series.interpolate(method="linear", limit=limit)
        theirs = series.ffill().bfill().tolist()
        # assert
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12, err_msg=f"trial {trial}")


def test_scale_and_unscale_round_trip():
    mean, std = np.array([10.0, -1.0]), np.array([2.0, 0.5])
    x = np.array([[12.0, -1.5], [10.0, 0.0]])
    scaled = scale(x, mean, std)
    np.testing.assert_allclose(scaled, [[1.0, -1.0], [0.0, 2.0]])
    np.testing.assert_allclose(unscale(scaled, mean, std), x)
