"""Global feature scaling agreed without sharing raw data.

Each site sends, per feature, its training-row count, sum and sum of squared deviations from its
own mean; the server pools them into the global mean and population standard deviation (Chan et
al.'s parallel combination: ``M2 = sum_i M2_i + sum_i n_i (mean_i - mean)^2``). Only these
totals leave a site. Squares about each site's own mean rather than raw sums of squares: with
raw ones, ``E[x^2] - E[x]^2`` loses digits when the mean is large against the spread (air
pressure, ~1013 ± 7 hPa). The result equals the mean and std of all sites' training rows pooled,
floored like ``edgecomp.data.prepare`` floors a constant feature's std.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgecomp.data.prep import floored_std

__all__ = ["SiteMoments", "pooled_scaler", "site_moments"]


@dataclass(frozen=True)
class SiteMoments:
    """What one site shares: row count, per-feature sums and squared deviations from its mean."""

    count: int
    sums: np.ndarray  # float64 [F]
    squares: np.ndarray  # float64 [F]: sum of (x - site mean)^2


def site_moments(values: np.ndarray) -> SiteMoments:
    """A site's totals over its (imputed) training rows [T, F].

    Raises:
        ValueError: Not [T, F] with T >= 1, or missing or infinite values.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or len(values) == 0:
        raise ValueError(f"site rows must be [T, F] with T >= 1, got shape {list(values.shape)}")
    if not np.isfinite(values).all():
        raise ValueError("site rows hold missing or infinite values; impute them first")
    sums = values.sum(axis=0)
    squares = ((values - sums / len(values)) ** 2).sum(axis=0)
    return SiteMoments(count=len(values), sums=sums, squares=squares)


def pooled_scaler(parts: Sequence[SiteMoments]) -> tuple[np.ndarray, np.ndarray]:
    """Global per-feature (mean, population std) from every site's moments.

    A constant feature's std is floored as ``prepare`` floors it (``floored_std``).

    Raises:
        ValueError: No site, a site without rows, or sites with different feature counts.
    """
    if not parts:
        raise ValueError("no site sent its statistics")
    shapes = sorted({(np.shape(p.sums), np.shape(p.squares)) for p in parts})
    if len(shapes) != 1 or len(shapes[0][0]) != 1 or shapes[0][0] != shapes[0][1]:
        raise ValueError(
            f"sites sent statistics of different shapes {shapes}: same features needed"
        )
    if any(p.count < 1 for p in parts):
        raise ValueError("a site sent statistics of no training rows")
    counts = np.array([p.count for p in parts], dtype=np.float64)
    sums = np.array([p.sums for p in parts], dtype=np.float64)
    mean = sums.sum(axis=0) / counts.sum()
    site_means = sums / counts[:, None]
    m2 = np.sum([p.squares for p in parts], axis=0) + counts @ (site_means - mean) ** 2
    std = np.sqrt(m2 / counts.sum())
    return mean, floored_std(mean, std)[0]
