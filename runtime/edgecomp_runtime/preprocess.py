"""Raw window -> model input and model output -> raw forecast (FORMAT.md, steps 2 and 3)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecomp_runtime.errors import InputShapeError, MissingValueError


def impute_window(
    x: np.ndarray, policy: dict[str, Any], *, features: list[str], first_row: int = 0
) -> np.ndarray:
    """Fill NaNs in raw windows per the artifact's imputation policy.

    Per column of each window: refuse it if more than ``max_missing_fraction`` of its L values are
    NaN (or all are); else fill NaN by linear interpolation along time, at most
    ``interpolate_limit`` steps per gap counted from the gap's start, then carry the last value
    (original or interpolated) forward, and fill a leading gap backward from the first value.

    Args:
        x: Raw windows [B, L, F]; not modified.
        policy: ``{"interpolate_limit": int, "then": "ffill", "max_missing_fraction": float}``.
        features: The F feature names, for error messages.
        first_row: Batch row of ``x[0]`` in the caller's batch, for error messages.

    Returns:
        A float64 copy of ``x`` without NaNs.

    Raises:
        MissingValueError: A column misses too many values; names the feature, its column, the
            batch row and the missing fraction.
    """
    out = np.array(x, dtype=np.float64)
    if out.ndim != 3 or out.shape[2] != len(features):
        raise InputShapeError(
            f"impute_window: expected [batch, L, {len(features)}], got {list(out.shape)}"
        )
    missing = np.isnan(out)
    if not missing.any():
        return out
    counts = missing.sum(axis=1)  # [B, F]
    max_fraction = float(policy["max_missing_fraction"])
    _refuse_beyond_policy(counts, out.shape[1], max_fraction, features, first_row)
    limit = int(policy["interpolate_limit"])
    for row, col in np.argwhere(counts > 0):
        out[row, :, col] = _fill_column(out[row, :, col], limit)
    return out


def _refuse_beyond_policy(
    counts: np.ndarray, length: int, max_fraction: float, features: list[str], first_row: int
) -> None:
    fraction = counts / length
    refused = (fraction > max_fraction) | (counts == length)
    if not refused.any():
        return
    row, col = (int(i) for i in np.argwhere(refused)[0])
    raise MissingValueError(
        f"window: feature '{features[col]}' (column {col}), batch row {first_row + row}: "
        f"{counts[row, col]} of {length} values missing ({fraction[row, col]:.1%}); the artifact's "
        f"imputation policy allows at most {max_fraction:.1%} and needs at least one value"
    )


def _fill_column(column: np.ndarray, limit: int) -> np.ndarray:
    """Interpolate the first ``limit`` steps of each gap, then forward fill, then back fill."""
    steps = np.arange(column.size)
    valid = ~np.isnan(column)
    known = steps[valid]
    last_valid = np.maximum.accumulate(np.where(valid, steps, -1))
    out = column.copy()
    interpolate = ~valid & (last_valid >= 0) & (steps - last_valid <= limit)
    out[interpolate] = np.interp(steps[interpolate], known, column[known])
    source = np.maximum.accumulate(np.where(np.isnan(out), -1, steps))
    carried = source >= 0
    out[carried] = out[source[carried]]
    out[~carried] = column[known[0]]
    return out


def scale(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Standardize raw values: ``(x - mean) / std`` over the last axis."""
    return (x - mean) / std


def unscale(y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Undo ``scale``: ``y * std + mean`` over the last axis."""
    return y * std + mean
