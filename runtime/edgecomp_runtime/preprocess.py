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
    With ``"sparse_columns": "fill"`` (graph artifacts: a sensor that is down must not silence
    the others) such a column is not refused: its L values become ``fill[column]`` (the training
    mean) and the rest of the window is forecast as usual.

    Args:
        x: Raw windows [B, L, F]; not modified.
        policy: ``{"interpolate_limit": int, "then": "ffill", "max_missing_fraction": float}``,
            optionally ``"sparse_columns": "fill"`` with ``"fill": [F numbers]``.
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
    if policy.get("sparse_columns") == "fill":
        counts = _fill_sparse(out, counts, max_fraction, policy["fill"])
    _refuse_beyond_policy(counts, out.shape[1], max_fraction, features, first_row)
    limit = int(policy["interpolate_limit"])
    for row in np.flatnonzero(counts.any(axis=1)):  # every gappy column of a row at once
        cols = np.flatnonzero(counts[row])
        out[row][:, cols] = _fill_columns(out[row][:, cols], limit)
    return out


def sparse_columns(counts: np.ndarray, length: int, max_fraction: float) -> np.ndarray:
    """bool [B, F]: the columns the policy refuses (more than ``max_fraction`` missing, or all)."""
    return (counts / length > max_fraction) | (counts == length)


def _fill_sparse(
    out: np.ndarray, counts: np.ndarray, max_fraction: float, fill: list[float]
) -> np.ndarray:
    """Set every column beyond the policy to its fill value in place; its counts become 0."""
    sparse = sparse_columns(counts, out.shape[1], max_fraction)
    rows, cols = np.nonzero(sparse)
    out[rows, :, cols] = np.asarray(fill, dtype=np.float64)[cols][:, None]
    return np.where(sparse, 0, counts)


def _refuse_beyond_policy(
    counts: np.ndarray, length: int, max_fraction: float, features: list[str], first_row: int
) -> None:
    fraction = counts / length
    refused = sparse_columns(counts, length, max_fraction)
    if not refused.any():
        return
    row, col = (int(i) for i in np.argwhere(refused)[0])
    raise MissingValueError(
        f"window: feature '{features[col]}' (column {col}), batch row {first_row + row}: "
        f"{counts[row, col]} of {length} values missing ({fraction[row, col]:.1%}); the artifact's "
        f"imputation policy allows at most {max_fraction:.1%} and needs at least one value"
    )


def _fill_columns(block: np.ndarray, limit: int) -> np.ndarray:
    """Per column of [L, k] (each with a value): interpolate the first ``limit`` steps of each
    gap between two values, then forward fill (a trailing gap too), then back fill a leading gap."""
    steps = np.arange(block.shape[0])[:, None]
    valid = ~np.isnan(block)
    last = np.maximum.accumulate(np.where(valid, steps, -1), axis=0)  # previous value's step
    ahead = np.minimum.accumulate(np.where(valid, steps, block.shape[0])[::-1], axis=0)[::-1]
    cols = np.arange(block.shape[1])
    before = block[np.maximum(last, 0), cols]
    after = block[np.minimum(ahead, block.shape[0] - 1), cols]
    inside = ~valid & (last >= 0) & (ahead < block.shape[0]) & (steps - last <= limit)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # huge readings: inf,
        slope = (after - before) / (ahead - last)  # which predict refuses as out of range
        out = np.where(inside, before + slope * (steps - last), block)
    source = np.maximum.accumulate(np.where(np.isnan(out), -1, steps), axis=0)
    carried = out[np.maximum(source, 0), cols]  # forward fill of values and interpolations
    first = block[np.argmax(valid, axis=0), cols]  # each column's first value
    return np.where(source >= 0, carried, first)


def scale(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Standardize raw values: ``(x - mean) / std`` over the last axis."""
    return (x - mean) / std


def unscale(y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Undo ``scale``: ``y * std + mean`` over the last axis."""
    return y * std + mean
