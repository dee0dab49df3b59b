"""Forecast bounds: a count never forecast below zero (``spec.output_floor``).

The compiler sets ``spec.output_floor`` (one lower bound per target, or null) for targets that
are non-negative in the training data; ``Model.predict`` and the stream clamp forecasts to it,
and the compiler scores its own forecasts through the same function, so both agree.
numpy only.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from edgecomp_runtime.errors import ArtifactError


def clamp_forecast(y: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Clamp forecasts ``y`` [..., F_out] in place to the spec's ``output_floor``; returns ``y``.

    Raises:
        ArtifactError: ``output_floor`` is not a list of one number or null per target.
    """
    return apply_floor(y, forecast_floor(spec))


def forecast_floor(spec: dict[str, Any]) -> np.ndarray | None:
    """The spec's ``output_floor`` as a read-only float64 array [F_out], checked; None: no floor.

    Raises:
        ArtifactError: ``output_floor`` is not a list of one number or null per target.
    """
    floor = spec.get("output_floor")
    return None if floor is None else _bounds(_key(floor, len(spec["targets"])))


def apply_floor(y: np.ndarray, bound: np.ndarray | None) -> np.ndarray:
    """Clamp ``y`` [..., F_out] in place to ``bound`` (from ``forecast_floor``); returns ``y``."""
    if bound is not None:
        np.maximum(y, bound.astype(y.dtype, copy=False), out=y)
    return y


def _key(floor: Any, n_targets: int) -> tuple[float, ...]:
    ok = isinstance(floor, list) and len(floor) == n_targets
    ok = ok and all(
        v is None or (isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v))
        for v in floor
    )
    if not ok:
        raise ArtifactError(
            f"spec.output_floor must be a list of {n_targets} numbers or nulls, got {floor!r}"
        )
    return tuple(-np.inf if v is None else float(v) for v in floor)


@functools.lru_cache(maxsize=64)
def _bounds(key: tuple[float, ...]) -> np.ndarray:
    bound = np.array(key, dtype=np.float64)
    bound.flags.writeable = False
    return bound
