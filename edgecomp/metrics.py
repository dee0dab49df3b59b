"""Forecast error per horizon step, in raw units, and the naive baselines to compare against.

Arrays are ``[N, H, F_out]``: N windows, H horizon steps, F_out targets. Every metric is computed
per target over the N windows, then averaged over targets. With an ``observed`` mask (True where
the truth was really measured, False where the data preparation imputed it) only observed values
are scored: imputed truth never counts. Output is JSON-safe: plain floats and ints, and ``None``
where a metric is undefined (a MAPE without a usable truth, a step without an observed value).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "ERROR_KEYS",
    "MAPE_FLOOR_FRACTION",
    "NO_OBSERVED",
    "horizon_metrics",
    "naive_forecasts",
    "observed_targets",
    "relative_change",
    "scored_note",
    "summarize",
]

MAPE_FLOOR_FRACTION = 0.1  # default MAPE floor: this fraction of the target's mean |truth|
NO_OBSERVED = "no observed value at this step: every truth value was imputed"


def _as_3d(name: str, array: Any, mask: np.ndarray | None = None) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 3:
        raise ValueError(f"{name} must be [N, H, F_out], got shape {list(array.shape)}")
    finite = np.isfinite(array) if mask is None else np.isfinite(array) | ~mask
    if not finite.all():
        where = "" if mask is None else " at observed positions"
        raise ValueError(f"{name} holds NaN or infinite values{where}")
    return array


def _as_mask(observed: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    if observed is None:
        return None
    mask = np.asarray(observed)
    if mask.dtype != np.bool_:
        raise ValueError(f"observed must be a boolean mask, got dtype {mask.dtype}")
    if mask.shape != shape:
        raise ValueError(
            f"observed mask shape {list(mask.shape)} differs from y_true {list(shape)}"
        )
    return mask


def _mape_floor(
    y_true: np.ndarray, mask: np.ndarray, mape_floor: float | Sequence[float] | None
) -> np.ndarray:
    """Per-target floor [F_out]: the default is MAPE_FLOOR_FRACTION * mean |observed truth|."""
    if mape_floor is None:
        total = np.where(mask, np.abs(y_true), 0.0).sum(axis=(0, 1))
        return MAPE_FLOOR_FRACTION * total / np.maximum(mask.sum(axis=(0, 1)), 1)
    floor = np.broadcast_to(np.asarray(mape_floor, dtype=np.float64), y_true.shape[2:])
    if not (np.isfinite(floor).all() and (floor >= 0).all()):
        raise ValueError(f"mape_floor must be finite and >= 0, got {mape_floor!r}")
    return floor


def _per_step(values: np.ndarray, keep: np.ndarray) -> list[float | None]:
    """Mean over each target's kept windows, then over the targets with any: [N, H, F] -> [H]."""
    count = keep.sum(axis=0)  # [H, F_out]
    per_target = np.where(count > 0, np.where(keep, values, 0.0).sum(axis=0), np.nan)
    per_target = per_target / np.maximum(count, 1)
    out: list[float | None] = []
    for row in per_target:
        kept = row[~np.isnan(row)]
        out.append(float(kept.mean()) if kept.size else None)
    return out


def _mape(
    y_true: np.ndarray, abs_err: np.ndarray, mask: np.ndarray, floor: np.ndarray
) -> list[float | None]:
    """Masked MAPE per step: observed entries whose |truth| reaches the floor and is not zero."""
    keep = mask & (np.abs(y_true) >= floor) & (y_true != 0)
    ratio = np.where(keep, abs_err / np.where(keep, np.abs(y_true), 1.0), 0.0)
    return [None if v is None else 100.0 * v for v in _per_step(ratio, keep)]


def horizon_metrics(
    y_true: Any,
    y_pred: Any,
    *,
    observed: Any = None,
    mape_floor: float | Sequence[float] | None = None,
) -> dict[str, Any]:
    """MAE, RMSE and MAPE (percent) per horizon step over observed values, averaged over targets.

    Only entries where ``observed`` is True are scored (all of them without a mask); a step with
    no observed entry gets ``None`` for every metric and a reason in ``unscored``. MAPE also skips
    entries whose truth is too close to zero to divide by: ``|truth| < floor`` or zero. The floor
    is per target, by default ``MAPE_FLOOR_FRACTION`` (0.1) times the target's mean observed
    ``|truth|``.

    Args:
        y_true: Truth in raw units, [N, H, F_out]; may be NaN where not observed.
        y_pred: Forecasts in raw units, same shape.
        observed: Boolean mask, same shape: True where the truth was measured, False where it
            was imputed. None scores every entry.
        mape_floor: One floor for all targets or one per target (raw units), instead of the default.

    Returns:
        ``{"mae": [H], "rmse": [H], "mape": [H], "scored": [H], "imputed": [H], "n_scored",
        "n_imputed", "unscored": {"h<k>": reason}}``; counts are values (window x target).

    Raises:
        ValueError: Shapes differ, are not 3-D, hold no window, the mask is not boolean, or an
            observed value or a forecast is not finite.
    """
    shape = np.shape(y_true)
    mask = _as_mask(observed, tuple(shape))
    y_true, y_pred = _as_3d("y_true", y_true, mask), _as_3d("y_pred", y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred shapes differ: {list(y_true.shape)} vs {list(y_pred.shape)}"
        )
    if y_true.shape[0] == 0:
        raise ValueError("y_true holds no window (N = 0)")
    mask = np.ones(y_true.shape, dtype=bool) if mask is None else mask
    err = np.where(mask, y_pred - y_true, 0.0)
    mse = _per_step(err**2, mask)
    scored = mask.sum(axis=(0, 2))
    imputed = (~mask).sum(axis=(0, 2))
    return {
        "mae": _per_step(np.abs(err), mask),
        "rmse": _rmse(err, mask),
        "mape": _mape(y_true, np.abs(err), mask, _mape_floor(y_true, mask, mape_floor)),
        "scored": [int(v) for v in scored],
        "imputed": [int(v) for v in imputed],
        "n_scored": int(scored.sum()),
        "n_imputed": int(imputed.sum()),
        "unscored": {f"h{h + 1}": NO_OBSERVED for h, v in enumerate(mse) if v is None},
    }


def _rmse(err: np.ndarray, mask: np.ndarray) -> list[float | None]:
    """RMSE per target over its observed windows, then averaged over targets."""
    count = mask.sum(axis=0)
    per_target = np.sqrt((err**2).sum(axis=0) / np.maximum(count, 1))
    out: list[float | None] = []
    for row, n in zip(per_target, count, strict=True):
        kept = row[n > 0]
        out.append(float(kept.mean()) if kept.size else None)
    return out


def scored_note(metrics: dict[str, Any]) -> str:
    """One line for a table: how many values it scored, how many imputed ones it left out, and
    the steps without an observed value."""
    if "n_scored" not in metrics:
        return "every value scored, imputed ones included (a record from an older edgecomp)"
    scored, imputed = (_count(metrics.get(key)) for key in ("n_scored", "n_imputed"))
    left_out = "an unknown number of" if imputed is None else f"{imputed:,}"
    text = f"scored {scored or 0:,} observed values, left out {left_out} imputed ones"
    empty = ", ".join(metrics.get("unscored") or {})
    return text + (f"; no observed value at {empty} (n/a)" if empty else "")


def _count(value: Any) -> int | None:
    """A count as records hold it: an int, or per-step counts (summed); None when absent."""
    if value is None:
        return None
    return int(sum(value)) if isinstance(value, list | tuple) else int(value)


def relative_change(artifact: Sequence[float | None], reference: Sequence[float | None]) -> list:
    """Per step ``artifact / reference - 1``; None where either is None or the reference is 0."""
    return [
        None if a is None or r is None or r == 0 else a / r - 1.0
        for a, r in zip(artifact, reference, strict=True)
    ]


def observed_targets(dataset: Any, split: str) -> np.ndarray:
    """Boolean [N, H, F_out] mask of the targets of ``split`` that were observed, not imputed.

    Reads the windows' ``y_observed`` when the data preparation provides it, else derives it
    from the dataset's raw (not imputed) grid, where missing values are NaN.
    """
    windows = dataset.split(split)
    mask = getattr(windows, "y_observed", None)
    if mask is not None:
        return np.asarray(mask, dtype=bool)
    raw = np.asarray(dataset.raw.to_numpy(dtype="float64"))[:, dataset.target_index]
    rows = windows.starts[:, None] + dataset.config.input_len + np.arange(dataset.config.horizon)
    return ~np.isnan(raw[rows])


ERROR_KEYS = ("mae", "rmse", "mape")


def summarize(metrics: dict[str, Any]) -> dict[str, float | None]:
    """Mean over the horizon of each error metric (mae, rmse, mape); steps with ``None`` are
    skipped (all None -> None)."""
    summary: dict[str, float | None] = {}
    for name in ERROR_KEYS:
        if name not in metrics:
            continue
        values = metrics[name]
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
