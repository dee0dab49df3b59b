"""Windows: sliding windows cut from one chronological split."""

from __future__ import annotations

from dataclasses import dataclass

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
