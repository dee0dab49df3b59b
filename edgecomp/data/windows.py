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
    """

    x: np.ndarray
    y: np.ndarray
    starts: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, index: np.ndarray | slice) -> Windows:
        return Windows(self.x[index], self.y[index], self.starts[index])
