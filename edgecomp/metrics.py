"""Forecast error per horizon step, in raw units, and the naive baselines to compare against.

Arrays are ``[N, H, F_out]``: N windows, H horizon steps, F_out targets. Every metric is computed
per target over the N windows, then averaged over targets. Output is JSON-safe: plain floats, and
``None`` where a MAPE is undefined.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["MAPE_FLOOR_FRACTION", "horizon_metrics", "naive_forecasts", "summarize"]

MAPE_FLOOR_FRACTION = 0.1  # default MAPE floor: this fraction of the target's mean |truth|


def _as_3d(name: str, array: Any) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 3:
        raise ValueError(f"{name} must be [N, H, F_out], got shape {list(array.shape)}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


def _mape_floor(y_true: np.ndarray, mape_floor: float | Sequence[float] | None) -> np.ndarray:
    """Per-target floor [F_out]: the default is MAPE_FLOOR_FRACTION * mean |truth| of the target."""
    if mape_floor is None:
        return MAPE_FLOOR_FRACTION * np.abs(y_true).mean(axis=(0, 1))
    floor = np.broadcast_to(np.asarray(mape_floor, dtype=np.float64), y_true.shape[2:])
    if not (np.isfinite(floor).all() and (floor >= 0).all()):
        raise ValueError(f"mape_floor must be finite and >= 0, got {mape_floor!r}")
    return floor


def _mape(y_true: np.ndarray, abs_err: np.ndarray, floor: np.ndarray) -> list[float | None]:
    """Masked MAPE per step: mean over each target's kept windows, then over targets with any."""
    mask = (np.abs(y_true) >= floor) & (y_true != 0)
    ratio = np.where(mask, abs_err / np.where(mask, np.abs(y_true), 1.0), 0.0)
    count = mask.sum(axis=0)  # [H, F_out]
    per_target = np.where(count > 0, ratio.sum(axis=0) / np.maximum(count, 1), np.nan)
    out: list[float | None] = []
    for row in per_target:
        kept = row[~np.isnan(row)]
        out.append(float(100.0 * kept.mean()) if kept.size else None)
    return out


def horizon_metrics(
    y_true: Any, y_pred: Any, *, mape_floor: float | Sequence[float] | None = None
) -> dict[str, list[Any]]:
    """MAE, RMSE and MAPE (percent) per horizon step, averaged over windows and targets.

    MAPE skips entries whose truth is too close to zero to divide by: those with
    ``|truth| < floor`` and those equal to zero. The floor is per target, by default
    ``MAPE_FLOOR_FRACTION`` (0.1) times the target's mean ``|truth|`` over all windows and steps.
    A step where no entry is left has MAPE ``None``.

    Args:
        y_true: Truth in raw units, [N, H, F_out].
        y_pred: Forecasts in raw units, same shape.
        mape_floor: One floor for all targets or one per target (raw units), instead of the default.

    Returns:
        ``{"mae": [H], "rmse": [H], "mape": [H]}``; floats, MAPE entries possibly ``None``.

    Raises:
        ValueError: Shapes differ, are not 3-D, hold no window, or values are not finite.
    """
    y_true, y_pred = _as_3d("y_true", y_true), _as_3d("y_pred", y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred shapes differ: {list(y_true.shape)} vs {list(y_pred.shape)}"
        )
    if y_true.shape[0] == 0:
        raise ValueError("y_true holds no window (N = 0)")
    err = y_pred - y_true
    mae = np.abs(err).mean(axis=0).mean(axis=1)
    rmse = np.sqrt((err**2).mean(axis=0)).mean(axis=1)
    return {
        "mae": [float(v) for v in mae],
        "rmse": [float(v) for v in rmse],
        "mape": _mape(y_true, np.abs(err), _mape_floor(y_true, mape_floor)),
    }


def summarize(metrics: dict[str, list[Any]]) -> dict[str, float | None]:
    """Mean over the horizon of each metric; steps with ``None`` are skipped (all None -> None)."""
    summary: dict[str, float | None] = {}
    for name, values in metrics.items():
        kept = [v for v in values if v is not None]
        summary[name] = float(np.mean(kept)) if kept else None
    return summary


def _check_windows(values: np.ndarray, starts: np.ndarray, input_len: int, horizon: int) -> None:
    if values.ndim != 2:
        raise ValueError(f"values must be [T, F], got shape {list(values.shape)}")
    if starts.ndim != 1:
        raise ValueError(f"starts must be 1-D, got shape {list(starts.shape)}")
    if input_len < 1 or horizon < 1:
        raise ValueError(f"input_len and horizon must be >= 1, got {input_len}, {horizon}")
    if starts.size and (starts.min() < 0 or starts.max() + input_len + horizon > len(values)):
        raise ValueError(
            f"windows do not fit in values: starts span [{starts.min()}, {starts.max()}] with "
            f"input_len {input_len} + horizon {horizon}, but values has {len(values)} rows"
        )


def _seasonal_rows(starts: np.ndarray, input_len: int, horizon: int, period: int) -> np.ndarray:
    """Row of the same phase one or more periods back, never inside the forecast window: [N, H]."""
    steps = np.arange(horizon)
    lag = period * (steps // period + 1)
    rows = starts[:, None] + input_len + steps[None, :] - lag[None, :]
    if rows.size and rows.min() < 0:
        first_ok = period - input_len
        raise ValueError(
            f"seasonal naive needs {period} steps of history before each forecast, but "
            f"{int((starts < first_ok).sum())} window(s) start before row {first_ok}; "
            f"drop those windows"
        )
    return rows


def naive_forecasts(
    values: Any,
    starts: Any,
    input_len: int,
    horizon: int,
    target_index: Sequence[int],
    seasonal_period: int | None = None,
) -> dict[str, np.ndarray]:
    """Naive baselines for windows cut from ``values``, in raw units, each [N, H, F_out].

    - ``"last_value"``: the last input value of each target, repeated over the horizon.
    - ``"seasonal_naive"`` (only when ``seasonal_period`` P is given): the value one period
      earlier, ``y_hat[s + L + h] = values[s + L + h - P]``; for h >= P it goes back as many whole
      periods as needed to stay in the past. It may read rows before the window (the past).

    Args:
        values: The full imputed raw series [T, F].
        starts: First row of each window [N].
        input_len: Window length L.
        horizon: Forecast steps H.
        target_index: Columns of ``values`` that are forecast targets (F_out).
        seasonal_period: Steps per season (e.g. per day), or None.

    Raises:
        ValueError: A window does not fit in ``values``, or a window lacks the history the seasonal
            naive needs (it raises rather than fill in: drop windows starting before ``P - L``).
    """
    values = np.asarray(values, dtype=np.float64)
    starts = np.asarray(starts, dtype=np.int64)
    _check_windows(values, starts, input_len, horizon)
    target_index = list(target_index)
    if not target_index or min(target_index) < 0 or max(target_index) >= values.shape[1]:
        raise ValueError(
            f"target_index {target_index} must name columns of values (0..{values.shape[1] - 1})"
        )
    targets = values[:, target_index]
    last = targets[starts + input_len - 1]
    out = {"last_value": np.repeat(last[:, None, :], horizon, axis=1)}
    if seasonal_period is not None:
        if not isinstance(seasonal_period, int | np.integer) or seasonal_period < 1:
            raise ValueError(f"seasonal_period must be a positive integer, got {seasonal_period!r}")
        out["seasonal_naive"] = targets[
            _seasonal_rows(starts, input_len, horizon, int(seasonal_period))
        ]
    return out
