"""One stream reading -> a row of raw sensor values, and its known-future values.

A reading's values come in any of these forms (``Readings.row``):

* a flat sequence or 1-D array of the F sensor features in model order (the manifest's
  ``spec.features`` without known-future lead channels; for a graph artifact that is its N x C
  node values plus any global features, in feature order);
* a dict feature name -> value (absent features are missing);
* for a graph artifact (``spec.layout``): an [N, C] array or nested list (node x channel, in the
  layout's node and channel order), or a dict node id -> its C values (a list, or a dict channel
  -> value), beside feature name -> value for global features.

NaN or None marks a missing value. Known-future values (``Readings.future``) are a dict column
-> its next H values, for the columns the artifact declares (``spec.future.columns``). numpy and
the standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgecomp_runtime.calendar import sensor_features
from edgecomp_runtime.errors import InputError, InputShapeError
from edgecomp_runtime.layout import lead_count, node_shape

__all__ = ["Readings"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_NUMBERS = (int, float, np.integer, np.floating)


class Readings:
    """Checks readings for one artifact (its spec) and turns them into raw rows.

    Attributes:
        features: The F sensor features a reading carries, in model order.
        columns: The declared known-future columns (empty when none).
        horizon: H, the number of known-future values per column.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self.features = sensor_features(spec)
        self._position = {name: i for i, name in enumerate(self.features)}
        future = spec.get("future") or {}
        self.columns: list[str] = list(future.get("columns") or [])
        self.horizon = int(spec["horizon"])
        layout = spec.get("layout")
        self._layout = layout
        self._nodes = {str(n): i for i, n in enumerate(layout["nodes"])} if layout else {}
        if layout:
            self._index = np.asarray(layout["index"], dtype=np.intp)
            self._shape = node_shape(layout)
            self._globals = len(layout["globals"]) - lead_count(spec)
        self._scaled_range(spec.get("scaler") or {})

    def _scaled_range(self, scaler: dict[str, Any]) -> None:
        """The raw values each feature may take so that it stays within float32 once scaled,
        and ``_safe``: a bound on |value| within which every feature does (one test per row)."""
        width = len(self.features)
        mean = np.asarray(scaler.get("mean", np.zeros(width)), dtype=np.float64)[:width]
        std = np.asarray(scaler.get("std", np.ones(width)), dtype=np.float64)[:width]
        self._std = std
        self._low, self._high = mean - _FLOAT32_MAX * std, mean + _FLOAT32_MAX * std
        inner = np.minimum(-self._low, self._high)
        self._safe = max(0.0, min(_FLOAT32_MAX, float(np.min(inner, initial=_FLOAT32_MAX))))

    def row(self, values: Any) -> np.ndarray:
        """float64 [F] raw values of one reading (NaN where missing).

        Raises:
            InputError: An unknown feature or node, a value that is not a finite number in
                float32 range (NaN and None excepted); ``InputShapeError`` for the wrong number
                of values, nodes or channels.
        """
        return self.counted(values)[0]

    def counted(self, values: Any) -> tuple[np.ndarray, int]:
        """``row(values)`` and its number of missing values.

        Raises:
            InputError: As ``row``.
        """
        if type(values) is np.ndarray and values.ndim == 1 and values.dtype.kind in "fiu":
            if len(values) == len(self.features):  # the common case first: a flat array
                row = values.astype(np.float64)
                # NOTE: NaN carries through maximum: one test for range and missing values
                if np.maximum.reduce(np.abs(row)) <= self._safe:
                    return row, 0
            row = self._array(values)
        else:
            row = self._row(values)
        self._check_scaled(row)
        # NOTE: every value is within float32 range, so the sum is finite unless one is NaN
        missing = math.isnan(np.add.reduce(row))
        return row, int(np.count_nonzero(np.isnan(row))) if missing else 0

    def _check_scaled(self, row: np.ndarray) -> None:
        """Refuse a value that scales beyond float32 (a sensor's FLT_MAX error sentinel on a
        feature of small std): in the window it would make the next L forecasts refuse."""
        outside = (row < self._low) | (row > self._high)
        if outside.any():
            k = int(np.flatnonzero(outside)[0])
            raise InputError(
                f"reading: feature '{self.features[k]}' is {row[k]:.6g}, beyond the float32 "
                f"range once scaled by the model (std {self._std[k]:.3g}); an error sentinel?"
            )

    def _row(self, values: Any) -> np.ndarray:
        if isinstance(values, Mapping):
            return self._mapping(values)
        if self._layout and _is_grid(values):
            return self._grid(values)
        if isinstance(values, np.ndarray) and values.dtype.kind in "fiu" and values.ndim == 1:
            return self._array(values)
        if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
            raise InputError(
                f"reading: values must be a list or a dict, not {type(values).__name__}"
            )
        if len(values) != len(self.features):
            raise InputShapeError(
                f"reading: expected {len(self.features)} values{self._grid_hint()}, "
                f"got {len(values)}"
            )
        return np.array([value(v, name) for v, name in zip(values, self.features, strict=True)])

    def future(self, given: Any) -> dict[str, np.ndarray] | None:
        """The known-future values of a reading, checked: ``{column: float64 [H]}`` or None.

        Raises:
            InputError: Not a dict, a column the artifact does not declare, or not H finite
                numbers.
        """
        if given is None:
            return None
        if not isinstance(given, Mapping):
            raise InputError(
                f"reading: future must be a dict column -> next {self.horizon} values, "
                f"not {type(given).__name__}"
            )
        unknown = sorted(repr(k) for k in set(given) - set(self.columns))
        if unknown:
            raise InputError(
                f"reading: future holds unknown column(s) [{', '.join(unknown[:5])}]; the "
                f"artifact's known-future columns are {self.columns}"
            )
        return {name: self._ahead(name, values) for name, values in given.items()}

    def _ahead(self, name: str, values: Any) -> np.ndarray:
        try:
            ahead = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            ahead = np.zeros(0)
        if ahead.shape != (self.horizon,) or not np.isfinite(ahead).all():
            raise InputError(
                f"reading: future['{name}'] must be {self.horizon} finite numbers (its next "
                f"{self.horizon} values), got {short(values)}"
            )
        return ahead

    def _mapping(self, values: Mapping) -> np.ndarray:
        row = np.full(len(self.features), np.nan)
        unknown = []
        for key, item in values.items():
            if self._nodes and _is_node_value(item) and str(key) in self._nodes:
                self._node_values(row, str(key), item)
            elif key in self._position:
                row[self._position[key]] = value(item, key)
            else:
                unknown.append(repr(key))
        if unknown:
            shown = ", ".join(sorted(unknown)[:5])
            what = "feature(s) or node(s)" if self._nodes else "feature(s)"
            raise InputError(f"reading: unknown {what} [{shown}]; expected {self._expected()}")
        return row

    def _node_values(self, row: np.ndarray, node: str, item: Any) -> None:
        channels = self._layout["channels"]
        index = self._index[self._nodes[node]]
        if isinstance(item, Mapping):
            unknown = sorted(repr(k) for k in set(item) - set(channels))
            if unknown:
                raise InputError(
                    f"reading: node '{node}' has unknown channel(s) [{', '.join(unknown[:5])}]; "
                    f"channels are {channels}"
                )
            item = [item.get(name) for name in channels]
        if len(item) != len(channels):
            raise InputShapeError(
                f"reading: node '{node}' has {len(item)} values, the artifact has "
                f"{len(channels)} channels {channels}"
            )
        for i, v, name in zip(index, item, channels, strict=True):
            row[i] = value(v, f"{node}/{name}")

    def _grid(self, values: Any) -> np.ndarray:
        n, c = self._shape
        counts = [len(node) for node in values]
        if len(counts) != n:
            raise InputShapeError(
                f"reading: {len(counts)} nodes, the artifact has {n} nodes "
                f"(a reading is [N={n}, C={c}])"
            )
        if any(count != c for count in counts):
            bad = next(count for count in counts if count != c)
            raise InputShapeError(
                f"reading: {bad} channels per node, the artifact has {c} "
                f"(a reading is [N={n}, C={c}])"
            )
        if self._globals:
            raise InputShapeError(
                f"reading: this artifact also takes {self._globals} global feature(s) beside its "
                f"{n} x {c} node values; pass a dict or the {len(self.features)} values flat"
            )
        grid = self._grid_values(values)
        row = np.empty(len(self.features))
        row[self._index.reshape(-1)] = grid.reshape(-1)
        return row

    def _grid_values(self, values: Any) -> np.ndarray:
        """float64 [N * C]: a real array checked at once, other values one by one."""
        c = self._shape[1]
        if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
            grid = values.astype(np.float64).reshape(-1)
            _check_range(grid, lambda k: f"node '{self._layout['nodes'][k // c]}', channel {k % c}")
            return grid
        nodes, channels = self._layout["nodes"], self._layout["channels"]
        return np.array(
            [
                value(v, f"{nodes[i]}/{channels[j]}")
                for i, node in enumerate(values)
                for j, v in enumerate(node)
            ]
        )

    def _array(self, values: np.ndarray) -> np.ndarray:
        if values.shape[0] != len(self.features):
            raise InputShapeError(
                f"reading: expected {len(self.features)} values{self._grid_hint()}, "
                f"got {values.shape[0]}"
            )
        row = values.astype(np.float64)
        _check_range(row, lambda k: f"feature '{self.features[k]}'")
        return row

    def _grid_hint(self) -> str:
        if not self._layout:
            return ""
        n, c = self._shape
        return f" (or [N={n}, C={c}] node values)"

    def _expected(self) -> str:
        if not self._nodes:
            return str(self.features)
        nodes = list(self._nodes)
        shown = nodes[:5] + (["..."] if len(nodes) > 5 else [])
        return f"nodes {shown} (each {self._layout['channels']}) or features"


def _is_grid(values: Any) -> bool:
    if isinstance(values, np.ndarray):
        return values.ndim == 2
    return (
        isinstance(values, Sequence)
        and not isinstance(values, (str, bytes))
        and len(values) > 0
        and all(_is_node_row(v) for v in values)
    )


def _is_node_row(item: Any) -> bool:
    if isinstance(item, np.ndarray):
        return item.ndim == 1
    return isinstance(item, Sequence) and not isinstance(item, (str, bytes))


def _is_node_value(item: Any) -> bool:
    if isinstance(item, np.ndarray):
        return item.ndim == 1
    return isinstance(item, (Mapping, Sequence)) and not isinstance(item, (str, bytes))


def _check_range(row: np.ndarray, where: Any) -> None:
    bad = np.abs(row) > _FLOAT32_MAX  # NaN compares False: a missing value
    if bad.any():
        k = int(np.argmax(bad))
        raise InputError(f"reading: {where(k)} is {out_of_range(row[k])}")


def finite(y: np.ndarray) -> bool:
    """True when every value of ``y`` is finite. Not by a sum: finite values near the dtype's
    largest overflow it, and numpy warns (an error under ``python -W error``)."""
    return bool(np.logical_and.reduce(np.isfinite(y), axis=None))


def value(item: Any, name: str) -> float:
    """One raw value: a finite number within float32 range, or NaN for None / NaN."""
    if item is None:
        return math.nan
    if isinstance(item, bool) or not isinstance(item, _NUMBERS):
        raise InputError(f"reading: feature '{name}' is {short(item)}, not a number")
    try:
        number = float(item)
    except OverflowError:  # an int beyond float64
        number = math.inf
    if abs(number) > _FLOAT32_MAX:  # NaN compares False: a missing value
        raise InputError(f"reading: feature '{name}' is {out_of_range(item)}")
    return number


def out_of_range(item: Any) -> str:
    """Why a value is out of range, for messages."""
    if isinstance(item, float | np.floating) and math.isinf(item):
        return "infinite; use NaN or null for missing"
    return f"{short(item)}, beyond the float32 range (±{_FLOAT32_MAX:.3g})"


def short(item: Any) -> str:
    """A value's repr, cut to 40 characters (a huge integer by its size)."""
    if isinstance(item, int) and item.bit_length() > 128:
        return f"an integer of {item.bit_length()} bits"
    return f"{item!r:.40}"
