"""Windows: sliding windows cut from one chronological split, and a suggested window size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Windows:
    """Sliding windows of one split, scaled with the training split's statistics.

    Attributes:
        x: Inputs, float32 [N, L, F], scaled.
        y: Targets, float32 [N, H, F_out], scaled.
        starts: int64 [N], row of each window's first input step in the full (regular) series.
        y_observed: bool [N, H, F_out]: True where the raw target value was observed in the file,
            False where it was imputed (interpolated, filled, or a removed spike). None on
            construction means every value was observed.
    """

    x: np.ndarray
    y: np.ndarray
    starts: np.ndarray
    y_observed: np.ndarray | None = None

    def __post_init__(self) -> None:
        mask = self.y_observed
        if mask is None:
            mask = np.ones(np.shape(self.y), dtype=bool)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != np.shape(self.y):
            raise ValueError(
                f"Windows.y_observed has shape {list(mask.shape)}, y {list(np.shape(self.y))}"
            )
        object.__setattr__(self, "y_observed", mask)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, index: np.ndarray | slice) -> Windows:
        """The windows at ``index`` (a slice, integer positions or a boolean mask)."""
        return Windows(self.x[index], self.y[index], self.starts[index], self.y_observed[index])


# (largest period in seconds, input steps, horizon steps, why): the first row that fits applies
_SUGGESTIONS = (
    (60, 120, 15, "2 hours of history for the next 15 minutes"),
    (300, 144, 12, "12 hours of history for the next hour"),
    (900, 96, 8, "one day of history for the next 2 hours"),
    (1800, 96, 12, "two days of history for the next 6 hours"),
    (3600, 168, 24, "one week of history for the next day"),
    (3 * 3600, 112, 8, "two weeks of history for the next day"),
    (86_400, 28, 7, "four weeks of history for the next week"),
    (7 * 86_400, 52, 4, "one year of history for the next 4 weeks"),
)


def suggest_windows(period_s: float, rows: int, *, business_days: bool = False) -> dict[str, Any]:
    """An input length and horizon for the sampling period, capped so the test split has windows.

    Args:
        period_s: The sampling period in seconds.
        rows: Rows of the regular grid.
        business_days: A business-day grid (5 steps a week).

    Returns:
        ``{"input_len": L, "horizon": H, "why": text}``.
    """
    fit = next((s for s in _SUGGESTIONS if period_s <= s[0]), (None, 24, 4, "24 steps for 4"))
    _, length, horizon, why = fit
    if business_days and period_s == 86_400:
        length, horizon, why = 20, 5, "four weeks of history for the next week, on business days"
    cap = max(2, int(rows * 0.15) - 8)  # a 15 % test split keeps at least 9 windows
    if length + horizon > cap:
        scale = cap / (length + horizon)
        length, horizon = max(1, int(length * scale)), max(1, int(horizon * scale))
        why += f", shortened to fit the {rows}-row table"
    return {"input_len": length, "horizon": horizon, "why": why}
