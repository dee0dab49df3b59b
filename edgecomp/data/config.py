"""DataConfig: how a table becomes windows; rebuilt from a ModelSpec by ``config_from_spec``."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from edgecomp.data.io import LAYOUTS, ON_DUPLICATE, DataError
from edgecomp.dataflags import read_overrides
from edgecomp_runtime.calendar import CALENDAR

TARGET_TRANSFORMS = ("auto", "none", "clamp")
_NAME_TUPLES = ("features", "targets", "value_cols", "exclude", "calendar", "future_cols")


@dataclass(frozen=True)
class DataConfig:
    """Windowing, splitting and imputation settings.

    Attributes:
        input_len: Input window length L in steps.
        horizon: Forecast horizon H in steps.
        stride: Steps between consecutive window starts.
        features: Input feature names (after layout); None: all value columns.
        targets: Forecast targets, each one of the features; None: the features.
        split: Train, val, test fractions of the grid's rows, in time order; they sum to 1. Train
            must be positive; a zero val or test fraction gives an empty split.
        interpolate_limit: Linear interpolation fills at most this many steps per gap (0: none).
        max_missing_fraction: Recorded in the imputation policy: the runtime refuses a window
            column missing more than this fraction.
        time_col: Time column; detected when None.
        id_col: Id column of a long table; detected when None.
        value_cols: Value columns of the file; detected when None.
        layout: "auto", "wide" or "long".
        regularize: Insert missing grid steps as NaN rows (see ``load_table``).
        spike_threshold: When set, values whose robust z-score against the train split exceeds
            it are set to missing before imputation (see ``prepare``); None: keep every value.
        exclude: File columns or feature names left out; None: none.
        drop_sparse: When set, every feature not named in ``features`` / ``targets`` that misses
            more than this fraction of its values in any split is dropped (with a note); columns
            with no value at all are then dropped instead of refused.
        on_duplicate: Rows with a repeated timestamp (or timestamp and id): "error", "first",
            "last" or "mean".
        seasons: Seasonal-naive baseline periods in steps; None: from the sampling period (daily
            and weekly for sub-daily data, weekly for daily data, see ``Dataset.seasons``).
        target_transform: "auto": forecasts of targets with no negative training value are
            clamped at 0 (``ModelSpec.output_floor``), "clamp": every target clamped at 0 (a
            target with negative training values is refused), "none": no bound.
        calendar: Calendar features fed for the forecast steps (``edgecomp_runtime.calendar``:
            "hour", "dow", "doy", each a sine/cosine pair); None: none.
        future_cols: Features whose values are known in advance (a holiday flag, a published
            schedule), fed for the forecast steps too; None: none.
        sparse_columns: A window column missing more than ``max_missing_fraction``: "refuse" (the
            window is refused, and left out here) or "fill" (the column becomes its training mean
            in that window, here and in the runtime, and the window is kept: graph models, where
            one station that is down must not silence the others; its targets stay unobserved).
        period_s: The sampling period in seconds the file must have (a model's, set by
            ``config_from_spec``: a model scored on data of another period reads its windows as
            other spans of time); None: any.
    """

    input_len: int
    horizon: int
    stride: int = 1
    features: tuple[str, ...] | None = None
    targets: tuple[str, ...] | None = None
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    interpolate_limit: int = 4
    max_missing_fraction: float = 0.5
    time_col: str | None = None
    id_col: str | None = None
    value_cols: tuple[str, ...] | None = None
    layout: str = "auto"
    regularize: bool = True
    spike_threshold: float | None = None
    exclude: tuple[str, ...] | None = None
    drop_sparse: float | None = None
    on_duplicate: str = "error"
    seasons: tuple[int, ...] | None = None
    target_transform: str = "auto"
    calendar: tuple[str, ...] | None = None
    future_cols: tuple[str, ...] | None = None
    sparse_columns: str = "refuse"
    period_s: float | None = None

    def __post_init__(self) -> None:
        for name in _NAME_TUPLES:
            value = getattr(self, name)
            if value is not None:
                _check(_is_names(value), name, "a list of unique non-empty names, or None")
                object.__setattr__(self, name, tuple(value))
        for name in ("input_len", "horizon", "stride"):
            _check(
                _is_int(getattr(self, name)) and getattr(self, name) > 0, name, "a positive integer"
            )
        _check_split(self.split)
        object.__setattr__(self, "split", tuple(float(f) for f in self.split))
        _check(
            _is_int(self.interpolate_limit) and self.interpolate_limit >= 0,
            "interpolate_limit",
            "a non-negative integer",
        )
        frac = self.max_missing_fraction
        _check(_is_num(frac) and 0 < frac <= 1, "max_missing_fraction", "a number in (0, 1]")
        _check(self.sparse_columns in ("refuse", "fill"), "sparse_columns", "'refuse' or 'fill'")
        period = self.period_s
        _check(period is None or (_is_num(period) and period > 0), "period_s", "> 0 or None")
        for name in ("time_col", "id_col"):
            value = getattr(self, name)
            _check(value is None or (isinstance(value, str) and value), name, "a name or None")
        _check(self.layout in LAYOUTS, "layout", f"one of {list(LAYOUTS)}")
        _check(not (self.layout == "wide" and self.id_col), "id_col", "None with layout='wide'")
        _check(isinstance(self.regularize, bool), "regularize", "true or false")
        spike = self.spike_threshold
        _check(spike is None or (_is_num(spike) and spike > 0), "spike_threshold", "> 0 or None")
        sparse = self.drop_sparse
        _check(
            sparse is None or (_is_num(sparse) and 0 <= sparse < 1),
            "drop_sparse",
            "a fraction in [0, 1) or None",
        )
        _check(self.on_duplicate in ON_DUPLICATE, "on_duplicate", f"one of {list(ON_DUPLICATE)}")
        seasons = self.seasons
        ok = seasons is None or (
            isinstance(seasons, list | tuple)
            and all(_is_int(s) and s > 0 for s in seasons)
            and len(set(seasons)) == len(seasons)
        )
        _check(ok, "seasons", "distinct positive step counts, or None")
        unknown = sorted(set(self.calendar or ()) - set(CALENDAR))
        _check(not unknown, "calendar", f"names among {list(CALENDAR)} (got {unknown})")
        _check(
            self.target_transform in TARGET_TRANSFORMS,
            "target_transform",
            f"one of {list(TARGET_TRANSFORMS)}",
        )
        if seasons is not None:
            object.__setattr__(self, "seasons", tuple(seasons))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "data config") -> DataConfig:
        """Rebuild from ``to_dict()`` output; unknown keys are refused, errors name ``source``."""
        if not isinstance(data, dict):
            raise DataError(f"{source}: expected an object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataError(f"{source}: unknown field(s) {unknown}; known: {sorted(known)}")
        try:
            return cls(**data)
        except (DataError, TypeError) as exc:
            raise DataError(f"{source}: {exc}") from None


def config_from_spec(spec: Any) -> DataConfig:
    """Rebuild the DataConfig a ModelSpec was trained with (from its fields and ``data``).

    Args:
        spec: A ModelSpec, or its dict (as stored under ``"spec"`` in an artifact manifest).

    Reading options set by ``edgecomp.dataflags.reading`` (the CLI's ``--time-col``,
    ``--exclude``, ``--drop-sparse``, ``--on-duplicate``) replace what the spec recorded.

    Returns:
        A DataConfig that windows the same file the same way (same grid, features, split, stride).

    Raises:
        DataError: The spec lacks a needed field or holds an invalid value.
    """
    d = spec.to_dict() if hasattr(spec, "to_dict") else spec
    if not isinstance(d, dict):
        raise DataError(f"spec: expected an object, got {type(d).__name__}")
    data, imp = d.get("data") or {}, d.get("imputation") or {}
    defaults = DataConfig(input_len=1, horizon=1)
    absent = [k for k in ("input_len", "horizon", "features", "targets") if k not in d]
    if absent:
        raise DataError(f"spec: missing field(s) {absent}")
    future = d.get("future") or {}
    leads = len(future.get("features", []))
    fields = {
        "input_len": d["input_len"],
        "horizon": d["horizon"],
        "features": d["features"][: len(d["features"]) - leads],
        "targets": d["targets"],
        "calendar": tuple(future.get("calendar", ())) or None,
        "future_cols": tuple(future.get("columns", ())) or None,
        "interpolate_limit": imp.get("interpolate_limit", defaults.interpolate_limit),
        "max_missing_fraction": imp.get("max_missing_fraction", defaults.max_missing_fraction),
        "sparse_columns": imp.get("sparse_columns", defaults.sparse_columns),
        "period_s": d.get("period_s"),
    }
    keys = ("stride", "split", "time_col", "id_col", "value_cols", "layout", "regularize")
    more = ("spike_threshold", "exclude", "drop_sparse", "on_duplicate", "seasons")
    for key in (*keys, *more, "target_transform"):
        fields[key] = data.get(key, getattr(defaults, key))
    if d.get("output_floor") is None:  # the model clamps nothing: neither may its scoring
        fields["target_transform"] = "none"
    fields.update(read_overrides())
    try:
        return DataConfig(**fields)
    except DataError as exc:
        raise DataError(f"spec: {exc}") from None


def _check(ok: Any, name: str, expected: str) -> None:
    if not ok:
        raise DataError(f"DataConfig.{name} must be {expected}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_names(value: Any) -> bool:
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        return False
    return all(isinstance(v, str) and v for v in value) and len(set(value)) == len(value)


def _check_split(split: Any) -> None:
    ok = isinstance(split, list | tuple) and len(split) == 3 and all(_is_num(f) for f in split)
    _check(
        ok and all(f >= 0 for f in split) and split[0] > 0,
        "split",
        "three fractions (train > 0, val >= 0, test >= 0)",
    )
    _check(abs(sum(split) - 1.0) < 1e-6, "split", f"fractions summing to 1 (got {sum(split):g})")
