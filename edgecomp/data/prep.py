"""prepare(): table -> imputed, scaled, windowed chronological splits.

The regular grid is cut into train / val / test segments (fractions of its rows, in time order).
Each segment is imputed on its own, so no value leaks across a boundary: linear interpolation along
time fills at most ``interpolate_limit`` steps per gap (counted from the gap's start), the rest is
forward filled and a leading gap back filled. The scaler (mean, std per feature) is fitted on the
imputed train segment only. Windows are cut inside each segment, so none crosses a boundary.

Checks on the values (each listed in ``Dataset.notes``):

* Gaps longer than ``interpolate_limit`` are forward filled here, so training sees a flat stretch;
  the runtime instead refuses a window in which a column misses more than
  ``max_missing_fraction`` of its L values. The note names the columns and their longest gap.
* Spikes: each feature's robust z-score ``|x - median| / (1.4826 * MAD)`` is computed against the
  train split (all rows are scored). Columns whose maximum exceeds ``SPIKE_NOTE_Z`` are always
  named (a wrong unit, e.g. a 1,048 mph wind speed). With ``DataConfig.spike_threshold`` set,
  values scoring above it are set to missing and imputed like any gap, counted per column in
  ``Dataset.spikes``; ``raw`` keeps them (a gateway sees them: the runtime does not remove spikes).
  A column whose train MAD is 0 (mostly one value, e.g. precipitation) is not scored.
* A feature constant over the train split is named and its std floored (a warning too).
* A feature with no value in one split is refused; one error names every such column and split.

Windows the gateway would refuse are left out. The runtime refuses a window in which a column
misses more than ``max_missing_fraction`` of its L values (or all of them); such a window is
neither trained on nor scored, and ``Dataset.left_out`` counts them per split with the columns
responsible. Targets keep a mask of what was observed: ``Windows.y_observed`` is False where a
target value was imputed, so metrics can score observed values only.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from edgecomp.data.config import DataConfig
from edgecomp.data.io import DataError, TableReport, _few, load_table, rejoin_names
from edgecomp.data.windows import Windows, suggest_windows
from edgecomp_runtime.calendar import calendar_features, lead_names
from edgecomp_runtime.transform import clamp_forecast

SPLITS = ("train", "val", "test")
SPIKE_NOTE_Z = 20.0  # always name a column whose max robust z-score exceeds this
_BUSINESS_DAYS = "business-day series: weekends not treated as gaps"  # load_table's note


@dataclass
class Dataset:
    """A prepared table: raw and imputed values, train-fitted scaler, windows per split.

    Attributes:
        config: The DataConfig used.
        source: ``{"file": basename, "sha256": hex digest of the file's bytes}``.
        report: What ``load_table`` found.
        features: Input feature names (F), in model order.
        targets: Target names (F_out), each one of ``features``.
        raw: Regular grid, not imputed (NaN where missing), feature columns only.
        values: float64 [T, F] imputed raw values (each split imputed on its own).
        mean: float64 [F] train mean.
        std: float64 [F] train std, a constant feature's at ``1e-6 * max(1, |mean|)``
            (``floored_std``).
        bounds: Row range [start, end) of each split.
        imputed: Per split, per feature: values imputed.
        train: Training windows (scaled).
        val: Validation windows (scaled).
        test: Test windows (scaled).
        imputation: The runtime's imputation policy (see runtime/FORMAT.md).
        notes: Findings while preparing (constant, mostly missing, long gaps, spikes).
        spikes: Per feature: values set to missing by ``spike_threshold`` (empty when off).
        observed: bool [T, F]: True where a value was observed (False: imputed, or a spike
            removed by ``spike_threshold``).
        left_out: Per split: ``{"windows": n, "of": total, "why": text, "columns": {name: n}}``,
            the windows the runtime would refuse under the missing-value policy (not in the
            split's windows).
        output_floor: Per target the lowest forecast allowed (0 or None), or None for no bound;
            see ``DataConfig.target_transform``.
        future: None, or the known-future lead channels appended to the features (their last K):
            ``{"calendar": [...], "columns": [...], "lead": H, "features": [K names]}``.
        seasons: Seasonal-naive baseline periods in steps: ``config.seasons`` when set, else one
            day and one week for sub-daily data, one week (7 steps, 5 on a business-day grid)
            for daily data, none otherwise.
    """

    config: DataConfig
    source: dict[str, str]
    report: TableReport
    features: list[str]
    targets: list[str]
    raw: pd.DataFrame
    values: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    bounds: dict[str, tuple[int, int]]
    imputed: dict[str, dict[str, int]]
    train: Windows
    val: Windows
    test: Windows
    imputation: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    spikes: dict[str, int] = field(default_factory=dict)
    observed: np.ndarray | None = None
    left_out: dict[str, dict[str, Any]] = field(default_factory=dict)
    seasons: tuple[int, ...] = ()
    output_floor: list[float | None] | None = None
    future: dict[str, Any] | None = None

    @property
    def target_index(self) -> list[int]:
        """Positions of the targets among the features."""
        return [self.features.index(t) for t in self.targets]

    @property
    def sensors(self) -> list[str]:
        """The features read from the file (without the known-future lead channels)."""
        return self.features[: len(self.features) - len((self.future or {}).get("features", []))]

    def split(self, name: str) -> Windows:
        """The windows of split ``name`` ("train", "val" or "test")."""
        if name not in SPLITS:
            raise DataError(f"unknown split '{name}'; expected one of {list(SPLITS)}")
        return getattr(self, name)

    def raw_inputs(self, name: str, *, imputed: bool = False) -> np.ndarray:
        """float32 [N, L, F] inputs of split ``name`` in raw units; NaN where missing unless
        ``imputed`` (as a gateway would see them)."""
        source = self.values if imputed else self.raw.to_numpy(dtype="float64")
        return _gather(source, self.split(name).starts, 0, self.config.input_len)

    def raw_targets(self, name: str) -> np.ndarray:
        """float32 [N, H, F_out] true targets of split ``name`` in raw units (imputed values;
        ``observed_targets`` says which were observed)."""
        starts = self.split(name).starts
        return _gather(
            self.values, starts, self.config.input_len, self.config.horizon, self.target_index
        )

    def season_name(self, steps: int) -> str:
        """Baseline name of a season: ``seasonal_naive_1d``, ``..._1w``, else ``..._<n>steps``."""
        days = steps * self.report.period_s / 86_400
        if _BUSINESS_DAYS in self.report.notes:  # 5 grid days a week
            days = steps / 5 * 7 if steps % 5 == 0 else 0.5
        if days >= 7 and days % 7 == 0:
            return f"seasonal_naive_{int(days // 7)}w"
        if days >= 1 and days % 1 == 0:
            return f"seasonal_naive_{int(days)}d"
        return f"seasonal_naive_{steps}steps"

    def observed_targets(self, name: str) -> np.ndarray:
        """bool [N, H, F_out]: True where the target of split ``name`` was observed."""
        return self.split(name).y_observed

    def unscale_targets(self, y_scaled: np.ndarray) -> np.ndarray:
        """Scaled forecasts [..., F_out] -> raw units, clamped to ``output_floor`` as the
        runtime clamps them."""
        idx = self.target_index
        raw = np.asarray(y_scaled) * self.std[idx] + self.mean[idx]
        return clamp_forecast(raw, {"output_floor": self.output_floor, "targets": self.targets})

    def with_scaler(self, mean: np.ndarray, std: np.ndarray) -> Dataset:
        """This dataset with its windows rescaled by another scaler (e.g. a model spec's own).

        Returns ``self`` when the statistics already match.
        """
        mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
        if mean.shape != self.mean.shape or std.shape != self.std.shape:
            raise DataError(
                f"{self.source['file']}: scaler has {mean.shape[0]} features, "
                f"the data {self.mean.shape[0]}"
            )
        if np.allclose(mean, self.mean, rtol=1e-9) and np.allclose(std, self.std, rtol=1e-9):
            return self
        tidx = self.target_index

        def rescale(w: Windows) -> Windows:
            x = (w.x * self.std + self.mean - mean) / std
            y = (w.y * self.std[tidx] + self.mean[tidx] - mean[tidx]) / std[tidx]
            return Windows(x.astype(np.float32), y.astype(np.float32), w.starts, w.y_observed)

        return replace(
            self,
            mean=mean,
            std=std,
            train=rescale(self.train),
            val=rescale(self.val),
            test=rescale(self.test),
        )

    def spec_fields(self) -> dict[str, Any]:
        """Keyword arguments for ``edgecomp.spec.ModelSpec`` except ``arch`` and ``hparams``."""
        cfg, rep = self.config, self.report
        return {
            "input_len": cfg.input_len,
            "horizon": cfg.horizon,
            "features": list(self.features),
            "targets": list(self.targets),
            "scaler": {"kind": "standard", "mean": self.mean.tolist(), "std": self.std.tolist()},
            "imputation": dict(self.imputation),
            "output_floor": self.output_floor,
            "future": self.future,
            "period_s": rep.period_s,
            "seasonal_period": rep.seasonal_period,
            "data": {
                "file": self.source["file"],
                "sha256": self.source["sha256"],
                "split": list(cfg.split),
                "stride": cfg.stride,
                "time_col": rep.time_col,
                "id_col": rep.id_col,
                "layout": rep.layout,
                "value_cols": list(rep.value_cols),
                "regularize": cfg.regularize,
                "on_duplicate": cfg.on_duplicate,
                "seasons": list(self.seasons),
                "target_transform": cfg.target_transform,
            }
            | ({"spike_threshold": cfg.spike_threshold} if cfg.spike_threshold else {})
            | ({"exclude": list(cfg.exclude)} if cfg.exclude else {})
            | ({"drop_sparse": cfg.drop_sparse} if cfg.drop_sparse is not None else {})
            | ({"grid": "business-day"} if _BUSINESS_DAYS in rep.notes else {})
            | ({"date_order": rep.date_order} if rep.date_order else {}),
        }

    def summary(self) -> dict[str, Any]:
        """Rows, period, gaps, imputed counts and windows per split, as a JSON-ready dict."""
        rep = self.report
        return {
            "file": self.source["file"],
            "layout": rep.layout,
            "rows": len(self.raw),
            "features": len(self.features),
            "targets": len(self.targets),
            "period_s": rep.period_s,
            "seasonal_period": rep.seasonal_period,
            "business_days": _BUSINESS_DAYS in rep.notes,
            "seasons": {self.season_name(s): s for s in self.seasons},
            "n_gap_steps": rep.n_gap_steps,
            "gaps": [list(g) for g in rep.gaps],
            "missing": int(self.raw[self.sensors].isna().to_numpy().sum()),
            "sparsest": _sparsest(self.raw[self.sensors]),
            "imputed": {s: sum(c.values()) for s, c in self.imputed.items()},
            "bounds": {s: list(b) for s, b in self.bounds.items()},
            "windows": {s: len(self.split(s)) for s in SPLITS},
            "left_out": {s: dict(v) for s, v in self.left_out.items()},
            "observed_targets": {
                s: [int(self.split(s).y_observed.sum()), int(self.split(s).y_observed.size)]
                for s in SPLITS
            },
            "notes": rep.notes + self.notes,
            "spikes": dict(self.spikes),
        }


def warn_if_other_source(dataset: Dataset, spec: dict[str, Any]) -> str | None:
    """Warn when ``dataset`` was not read from the file the spec's model was trained on: another
    sha256 and other training-split statistics (the same rows re-saved raise no warning). Its
    test split may then overlap the model's training data or hold data of another scale, so the
    figures scored on it compare the model with other data. Returns the warning, else None."""
    recorded = (spec.get("data") or {}).get("sha256")
    mean = np.asarray((spec.get("scaler") or {}).get("mean", ()), dtype=np.float64)
    std = np.asarray((spec.get("scaler") or {}).get("std", ()), dtype=np.float64)
    if not recorded or recorded == dataset.source["sha256"] or mean.shape != dataset.mean.shape:
        return None
    gap = np.abs(dataset.mean - mean) / std  # in the model's own std units
    if std.shape != mean.shape or not np.nanmax(gap, initial=0.0) > 1e-3:
        return None
    i = int(np.nanargmax(gap))
    text = (
        f"{dataset.source['file']} is not the file the model was trained on "
        f"({spec['data'].get('file')}, sha256 {recorded[:12]}): the mean of "
        f"'{dataset.features[i]}' over its training split is {dataset.mean[i]:.4g}, the model's "
        f"{mean[i]:.4g}; its test split may overlap the model's training data or hold other "
        f"data, so the figures scored on it compare the model with other data"
    )
    warnings.warn(text, stacklevel=2)
    return text


def _sparsest(raw: pd.DataFrame, most: int = 5) -> dict[str, float]:
    """The ``most`` columns missing the largest share of their values (none when complete)."""
    share = raw.isna().mean().sort_values(ascending=False, kind="stable")
    return {str(c): round(float(f), 4) for c, f in share.head(most).items() if f > 0}


def prepare(source: str | Path, config: DataConfig) -> Dataset:
    """Load ``source`` and turn it into imputed, scaled windows split by time.

    Args:
        source: CSV, CSV.gz or Parquet file (see ``load_table`` for the accepted layouts).
        config: Windowing, split and imputation settings.

    Returns:
        The Dataset.

    Raises:
        DataError: Bad file content, unknown feature or target names, or too few rows overall or
            in a split.
    """
    path = Path(source)
    frame, report = load_table(
        path,
        time_col=config.time_col,
        id_col=config.id_col,
        value_cols=config.value_cols,
        layout=config.layout,
        regularize=config.regularize,
        exclude=config.exclude or (),
        on_duplicate=config.on_duplicate,
        keep_empty=config.drop_sparse is not None,
    )
    _check_period(report, config, path)
    bounds = _bounds(len(frame), config, path, report.period_s)
    frame, notes = _drop_sparse(frame, bounds, config, path)
    features, targets = _select(list(frame.columns), config, path)
    raw = frame[features]
    raw_np = raw.to_numpy(dtype="float64")
    cleaned, spikes, spike_notes = _spikes(raw_np, bounds["train"], raw, config.spike_threshold)
    notes += spike_notes
    values, imputed = _impute(
        cleaned,
        bounds,
        features,
        config.interpolate_limit,
        path,
        config.sparse_columns == "fill",
        _named(config),
    )
    notes += _missing_notes(raw_np, features, config.max_missing_fraction, config.sparse_columns)
    notes += _gap_notes(raw_np, features, config)
    sensors = features
    values, raw, features, future = _with_leads(values, raw, report, config, path)
    mean, std, scaler_notes = _fit_scaler(values[slice(*bounds["train"])], features)
    notes += scaler_notes
    scaled = ((values - mean) / std).astype(np.float32)
    tidx = [features.index(t) for t in targets]
    observed = ~np.isnan(cleaned)
    windows, left_out = {}, {}
    for s in SPLITS:
        windows[s], left_out[s] = _windows(scaled, observed, raw_np, bounds[s], config, tidx)
        left_out[s]["columns"] = {sensors[i]: n for i, n in left_out[s]["columns"].items()}
    notes += _left_out_notes(left_out, config, path)
    return Dataset(
        config=config,
        source={"file": path.name, "sha256": _sha256(path)},
        report=report,
        features=features,
        targets=targets,
        raw=raw,
        values=values,
        mean=mean,
        std=std,
        bounds=bounds,
        imputed=imputed,
        imputation=_policy(config, mean),
        notes=notes,
        spikes=spikes,
        observed=observed,
        left_out=left_out,
        seasons=_seasons(report, config),
        output_floor=_output_floor(cleaned[slice(*bounds["train"]), tidx], targets, config, path),
        future=future,
        **windows,
    )


def _with_leads(
    values: np.ndarray, raw: pd.DataFrame, report: TableReport, config: DataConfig, path: Path
) -> tuple[np.ndarray, pd.DataFrame, list[str], dict[str, Any] | None]:
    """Append the known-future lead channels (``edgecomp_runtime.calendar``) to the values.

    Row r of a lead channel holds its source at row r + H: a calendar feature of the time
    ``t[r] + H * period`` (as the runtime computes it from a window's timestamps), or a declared
    column's imputed value (NaN past the end; no window reads it).
    """
    calendar, columns = list(config.calendar or ()), list(config.future_cols or ())
    sensors = list(raw.columns)
    if not calendar and not columns:
        return values, raw, sensors, None
    unknown = [c for c in columns if c not in sensors]
    if unknown:
        raise DataError(
            f"{path}: --future-cols {unknown} are not features; features: {_few(sensors)}"
        )
    if calendar and _BUSINESS_DAYS in report.notes:
        raise DataError(
            f"{path}: calendar features need a regular grid; this is a business-day series"
        )
    lead = config.horizon
    seconds = raw.index.asi8 // 10**9 + round(lead * report.period_s)
    parts = [calendar_features(seconds, calendar)] if calendar else []
    for name in columns:
        shifted = np.full(len(values), np.nan)
        shifted[: len(values) - lead] = values[lead:, sensors.index(name)]
        parts.append(shifted[:, None])
    leads = np.concatenate(parts, axis=1)
    names = lead_names(calendar, columns, lead)
    future = {"calendar": calendar, "columns": columns, "lead": lead, "features": names}
    extended = raw.join(pd.DataFrame(leads, index=raw.index, columns=names))
    return np.concatenate([values, leads], axis=1), extended, [*sensors, *names], future


def _select(columns: list[str], config: DataConfig, path: Path) -> tuple[list[str], list[str]]:
    features = rejoin_names(config.features, columns) if config.features else columns
    unknown = [f for f in features if f not in columns]
    if unknown:
        raise DataError(f"{path}: unknown feature(s) {unknown}; available: {_few(columns)}")
    targets = rejoin_names(config.targets, features) if config.targets else list(features)
    unknown = [t for t in targets if t not in features]
    if unknown:
        raise DataError(
            f"{path}: unknown target(s) {unknown}; targets must be among the features: "
            f"{_few(features)}"
        )
    return features, targets


def _output_floor(
    train: np.ndarray, targets: list[str], config: DataConfig, path: Path
) -> list[float | None] | None:
    """0 for each target with no negative training value (see ``DataConfig.target_transform``)."""
    if config.target_transform == "none":
        return None
    low = np.nanmin(train, axis=0)
    negative = [f"{t} (min {m:g})" for t, m in zip(targets, low, strict=True) if m < 0]
    if config.target_transform == "clamp" and negative:
        raise DataError(
            f"{path}: --target-transform clamp needs non-negative targets; negative in the "
            f"train split: {_few(negative)}"
        )
    floor = [None if m < 0 else 0.0 for m in low]
    return floor if any(v is not None for v in floor) else None


def _seasons(report: TableReport, config: DataConfig) -> tuple[int, ...]:
    if config.seasons is not None:
        return config.seasons
    period = report.period_s
    if report.seasonal_period:  # sub-daily: steps per day
        return (report.seasonal_period, 7 * report.seasonal_period)
    if period == 86_400:
        return (5,) if _BUSINESS_DAYS in report.notes else (7,)
    return ()


def _drop_sparse(
    frame: pd.DataFrame, bounds: dict[str, tuple[int, int]], config: DataConfig, path: Path
) -> tuple[pd.DataFrame, list[str]]:
    """Drop the columns missing more than ``config.drop_sparse`` in any split (not named ones)."""
    if config.drop_sparse is None:
        return frame, []
    named = set(rejoin_names((*(config.features or ()), *(config.targets or ())), frame.columns))
    missing = frame.isna().to_numpy()
    worst = np.max([missing[a:b].mean(axis=0) for a, b in bounds.values() if b > a], axis=0)
    drop = [(c, f) for c, f in zip(frame.columns, worst, strict=True) if f > config.drop_sparse]
    drop = [(c, f) for c, f in drop if c not in named]
    if len(drop) == frame.shape[1]:
        raise DataError(
            f"{path}: --drop-sparse {config.drop_sparse:g} would drop every column (least "
            f"sparse misses {worst.min():.0%} in a split)"
        )
    if not drop:
        return frame, []
    listed = _few([f"{c} ({f:.0%})" for c, f in drop], 40)
    note = f"drop_sparse {config.drop_sparse:g}: dropped {len(drop)} column(s) (worst split "
    return frame.drop(columns=[c for c, _ in drop]), [note + f"missing): {listed}"]


class WindowTooLongError(DataError):
    """The window (input_len + horizon) does not fit the file or a split; ``fitting`` is an
    (input_len, horizon) that fits every split, or None when none does."""

    def __init__(self, message: str, fitting: tuple[int, int] | None) -> None:
        super().__init__(message)
        self.fitting = fitting


def _bounds(
    rows: int, config: DataConfig, path: Path, period_s: float
) -> dict[str, tuple[int, int]]:
    need = config.input_len + config.horizon
    n_train = round(rows * config.split[0])
    n_val = min(round(rows * config.split[1]), rows - n_train)
    edges = [0, n_train, n_train + n_val, rows]
    bounds = {s: (edges[i], edges[i + 1]) for i, s in enumerate(SPLITS)}
    shortest = min(b - a for i, (a, b) in enumerate(bounds.values()) if config.split[i] > 0)
    fitting = _fitting(shortest, rows, period_s)
    if rows < need:
        raise WindowTooLongError(
            f"{path}: {rows} rows, fewer than input_len + horizon = {need}"
            + _shorter_hint(shortest, fitting),
            fitting,
        )
    for i, (name, (a, b)) in enumerate(bounds.items()):
        if config.split[i] > 0 and b - a < need:
            raise WindowTooLongError(
                f"{path}: the {name} split has {b - a} rows ({config.split[i]:g} of {rows}); it "
                f"needs at least {need} (input_len {config.input_len} + horizon {config.horizon})"
                + _shorter_hint(shortest, fitting),
                fitting,
            )
    return bounds


def _fitting(fits: int, rows: int, period_s: float) -> tuple[int, int] | None:
    """The suggested (input_len, horizon), shortened to ``fits`` rows (the shortest split);
    None when not even 2 + 1 steps fit."""
    if fits < 3:
        return None
    s = suggest_windows(period_s, rows)
    length, horizon = s["input_len"], s["horizon"]
    if length + horizon > fits or length < 2:
        horizon = max(1, min(horizon, fits // 4))
        length = fits - horizon
    return length, horizon


def _shorter_hint(fits: int, fitting: tuple[int, int] | None) -> str:
    if fitting is None:
        return "; the file is too short to window: add rows or change --split"
    return (
        f"; pass a shorter window: input_len + horizon <= {fits} fits every split "
        f"(e.g. -L {fitting[0]} -H {fitting[1]})"
    )


def _impute(
    raw: np.ndarray,
    bounds: dict[str, tuple[int, int]],
    features: list[str],
    limit: int,
    path: Path,
    fill_empty: bool = False,
    named: set[str] | frozenset[str] = frozenset(),
) -> tuple[np.ndarray, dict[str, dict[str, int]]]:
    values = raw.copy()
    counts, empty = {}, {}
    train = raw[slice(*bounds["train"])]
    for name, (a, b) in bounds.items():
        block = raw[a:b]
        holes = np.isnan(block).sum(axis=0)
        fills = []
        for i in np.flatnonzero(holes == b - a) if b > a else []:
            if fill_empty and name != "train" and not np.isnan(train[:, i]).all():
                fills.append(i)  # every window of the split fills it (sparse_columns)
                continue
            empty.setdefault(features[i], []).append(name)
        if holes.any() and not empty:
            values[a:b] = fill_missing(block, limit)
            for i in fills:
                values[a:b, i] = np.nanmean(train[:, i])
        counts[name] = {f: int(n) for f, n in zip(features, holes, strict=True)}
    if empty:
        listed = ", ".join(f"'{c}' ({' and '.join(s)} split)" for c, s in empty.items())
        kept = [c for c in empty if c in named]
        hint = (
            f"'{kept[0]}' is named by --targets/--features: choose a --split whose splits hold "
            f"its values, or a file where it is observed"
            if kept
            else "leave them out with --exclude COL,... or --drop-sparse FRACTION"
        )
        raise DataError(
            f"{path}: {len(empty)} column(s) with no values in a split, cannot impute: {listed}; "
            f"{hint}"
        )
    return values, counts


def fill_missing(block: np.ndarray, limit: int) -> np.ndarray:
    """Fill NaN in [T, F] along time: linear interpolation of at most ``limit`` steps per gap
    (counted from the gap's start), then forward fill, then back fill a leading gap."""
    frame = pd.DataFrame(block)
    if limit > 0:
        frame = frame.interpolate(
            method="linear", limit=limit, limit_direction="forward", limit_area="inside"
        )
    return frame.ffill().bfill().to_numpy(dtype="float64")


def floored_std(mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The std features are scaled by, and which are constant: a feature whose std is under a
    millionth of its |mean| (below float32's resolution) or under 1e-30 is constant, and scaled
    by ``1e-6 * max(1, |mean|)``. Relative to the mean, so that a series in small units
    (3e-8 ± 1e-8 farad) is not taken for a constant one."""
    size = np.abs(np.asarray(mean, dtype=np.float64))
    constant = np.asarray(std) < np.maximum(1e-6 * size, 1e-30)
    return np.where(constant, 1e-6 * np.maximum(1.0, size), std), constant


def _fit_scaler(train: np.ndarray, features: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    mean = train.mean(axis=0)
    std, flat = floored_std(mean, train.std(axis=0))
    constant = [features[i] for i in np.flatnonzero(flat)]
    notes = []
    if constant:
        notes.append(f"constant in the train split (std floored): {', '.join(constant)}")
        warnings.warn(notes[-1], stacklevel=3)
    return mean, std, notes


def _missing_notes(
    raw: np.ndarray, features: list[str], max_fraction: float, sparse: str = "refuse"
) -> list[str]:
    frac = np.isnan(raw).mean(axis=0)
    then = "refuse windows" if sparse == "refuse" else "fill it with its training mean in windows"
    return [
        f"column '{features[i]}' is {frac[i]:.0%} missing, more than max_missing_fraction "
        f"{max_fraction:g}: the runtime will {then} where it is that sparse"
        for i in np.flatnonzero(frac > max_fraction)
    ]


def _spikes(
    raw: np.ndarray, train: tuple[int, int], frame: pd.DataFrame, threshold: float | None
) -> tuple[np.ndarray, dict[str, int], list[str]]:
    """Robust z-scores against the train split: notes on outlying columns; values above
    ``threshold`` set to NaN (when set), with counts per column."""
    block = raw[slice(*train)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: refused later
        median = np.nanmedian(block, axis=0)
        scale = 1.4826 * np.nanmedian(np.abs(block - median), axis=0)
        z = np.abs(raw - median) / np.where(scale > 0, scale, np.nan)
    z = np.where(np.isnan(z), 0.0, z)
    notes = []
    peak = z.max(axis=0)
    loud = np.flatnonzero(peak > SPIKE_NOTE_Z)
    if loud.size:
        found = ", ".join(
            f"{frame.columns[i]} (z {peak[i]:.3g} at {frame.index[z[:, i].argmax()].isoformat()}, "
            f"value {raw[z[:, i].argmax(), i]:g})"
            for i in loud
        )
        notes.append(f"possible unit spikes (robust z-score > {SPIKE_NOTE_Z:g} vs train): {found}")
    if threshold is None:
        return raw, {}, notes
    hit = z > threshold
    counts = {str(c): int(n) for c, n in zip(frame.columns, hit.sum(axis=0), strict=True)}
    if hit.any():
        listed = ", ".join(f"{c}: {n}" for c, n in counts.items() if n)
        notes.append(f"spike_threshold {threshold:g}: values set to missing: {listed}")
    return np.where(hit, np.nan, raw), counts, notes


def _gap_notes(raw: np.ndarray, features: list[str], config: DataConfig) -> list[str]:
    """Name the columns with a gap longer than ``interpolate_limit`` (forward filled here)."""
    longest = [_longest_run(np.isnan(raw[:, i])) for i in range(raw.shape[1])]
    long = [(f, n) for f, n in zip(features, longest, strict=True) if n > config.interpolate_limit]
    if not long:
        return []
    listed = _few([f"{f} ({n})" for f, n in sorted(long, key=lambda fn: -fn[1])])
    refused = int(config.max_missing_fraction * config.input_len) + 1
    return [
        f"gaps longer than interpolate_limit {config.interpolate_limit} are forward filled here; "
        f"the runtime refuses windows missing {refused}+ of a column's {config.input_len} "
        f"values; longest gap (steps): {listed}"
    ]


def _longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of True in a 1-D bool array."""
    if not mask.any():
        return 0
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())


def _windows(
    scaled: np.ndarray,
    observed: np.ndarray,
    raw: np.ndarray,
    bound: tuple[int, int],
    config: DataConfig,
    tidx: list[int],
) -> tuple[Windows, dict[str, Any]]:
    """The split's windows the runtime would accept, and what was left out (see ``left_out``)."""
    a, b = bound
    L, H = config.input_len, config.horizon  # noqa: N806
    starts = np.arange(a, max(a, b - L - H + 1), config.stride, dtype=np.int64)
    refused = refused_windows(raw, starts, L, config.max_missing_fraction)  # [N, F]
    fill = config.sparse_columns == "fill"
    keep = starts if fill else starts[~refused.any(axis=1)]
    x = _gather(scaled, keep, 0, L)
    if fill:  # as the runtime does: the column becomes its training mean (0 once scaled)
        rows, cols = np.nonzero(refused)  # sensor columns come first in the features
        x[rows, :, cols] = 0.0
    windows = Windows(
        x, _gather(scaled, keep, L, H, tidx), keep, _gather(observed, keep, L, H, tidx, dtype=bool)
    )
    columns = refused.sum(axis=0)
    left_out = {
        "windows": len(starts) - len(keep),
        "of": len(starts),
        "why": "the runtime refuses them: a column misses more than max_missing_fraction",
        "columns": {int(i): int(columns[i]) for i in np.flatnonzero(columns)} if not fill else {},
    }
    if fill:
        left_out["filled"] = int(refused.sum())  # (window, column) pairs set to the mean
    return windows, left_out


def refused_windows(
    raw: np.ndarray, starts: np.ndarray, input_len: int, max_fraction: float
) -> np.ndarray:
    """bool [N, F]: True where the runtime's imputation would refuse column f of window n.

    Same rule as ``edgecomp_runtime.preprocess.impute_window``: a column of the L input steps is
    refused when more than ``max_fraction`` of its values, or all of them, are missing (NaN).
    """
    missing = np.concatenate([np.zeros((1, raw.shape[1])), np.cumsum(np.isnan(raw), axis=0)])
    counts = missing[starts + input_len] - missing[starts]  # [N, F]
    return (counts / input_len > max_fraction) | (counts == input_len)


def _check_period(report: Any, config: DataConfig, path: Path) -> None:
    """Refuse a file sampled at another period than the model's (``config.period_s``)."""
    want = config.period_s
    if want is None or abs(report.period_s - want) <= 1e-6 * want:
        return
    raise DataError(
        f"{path}: sampled every {report.period_s:g} s, the model every {want:g} s: its windows "
        f"would span other lengths of time than the model learned; resample the file to "
        f"{want:g}-second steps (or train a model on it)"
    )


def _named(config: DataConfig) -> set[str]:
    """The columns --targets and --features name (kept by --drop-sparse)."""
    return {*(config.targets or ()), *(config.features or ())}


def _no_window_hint(worst: list[tuple[str, int]], config: DataConfig) -> str:
    """What to do when a split keeps no window: --drop-sparse, unless a column that refuses
    every window is named by --targets/--features (which --drop-sparse keeps)."""
    kept = [c for c, n in worst if n == worst[0][1] and c in _named(config)]
    if not kept:
        return "try --drop-sparse FRACTION"
    return (
        f"'{kept[0]}' is named by --targets/--features, so --drop-sparse keeps it: choose a "
        f"--split whose splits hold its values, or a file where it is observed"
    )


def _left_out_notes(
    left_out: dict[str, dict[str, Any]], config: DataConfig, path: Path
) -> list[str]:
    """A note per split with refused windows; an error when a split keeps none."""
    notes = []
    for i, (name, info) in enumerate(left_out.items()):
        if not info["windows"]:
            continue
        worst = sorted(info["columns"].items(), key=lambda cn: -cn[1])
        text = (
            f"{name} split: {info['windows']} of {info['of']} windows left out (the runtime "
            f"refuses a window whose column misses more than {config.max_missing_fraction:g} of "
            f"its {config.input_len} values; columns: {_few([f'{c} ({n})' for c, n in worst])})"
        )
        if info["windows"] == info["of"] and config.split[i] > 0:
            raise DataError(f"{path}: {text}: no window left; {_no_window_hint(worst, config)}")
        notes.append(text)
    return notes


def _gather(
    array: np.ndarray,
    starts: np.ndarray,
    offset: int,
    length: int,
    cols: list[int] | None = None,
    dtype: Any = np.float32,
) -> np.ndarray:
    """[N, length, F] blocks ``array[s + offset : s + offset + length]`` for s in starts."""
    view = sliding_window_view(array, length, axis=0)  # [T - length + 1, F, length]
    out = view[starts + offset].transpose(0, 2, 1)
    if cols is not None:
        out = out[:, :, cols]
    return np.ascontiguousarray(out, dtype=dtype)


def _policy(config: DataConfig, mean: np.ndarray) -> dict[str, Any]:
    policy = {
        "interpolate_limit": config.interpolate_limit,
        "then": "ffill",
        "max_missing_fraction": config.max_missing_fraction,
    }
    if config.sparse_columns == "fill":  # a too-sparse column becomes its training mean
        policy |= {"sparse_columns": "fill", "fill": [float(m) for m in mean]}
    return policy


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
