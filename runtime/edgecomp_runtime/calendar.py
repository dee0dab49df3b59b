"""Known-future inputs: calendar features and declared columns, as "lead" channels.

A model trained with known-future inputs (``spec.future``) takes K extra input channels after the
F sensor features: at window step t, lead channel k holds the value of its source at step
t + H (H = ``spec.future.lead``, the horizon), so the last H steps of the window carry the values
of the forecast steps. The model keeps one input tensor [B, L, F + K], which every backend
exports unchanged.

Sources: calendar features (``CALENDAR``: hour of day, day of week, day of year, each as a
sine/cosine pair, from UTC timestamps) and declared columns (``spec.future.columns``), which are
also sensor features: their next H values are given to ``predict(future=...)``.

The compiler imports ``calendar_features`` and ``lead_names`` from here, so both sides compute
the same arrays. numpy and the standard library only.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any

import numpy as np

from edgecomp_runtime.errors import ArtifactError, InputError, InputShapeError

_DAY_S = 86_400.0


_COMPACT_OFFSET = re.compile(r"(\d:\d\d(?::\d\d(?:\.\d+)?)?\s*[+-]\d\d)(\d\d)$")  # +0100


def from_iso(text: str) -> datetime:
    """``datetime.fromisoformat`` that reads what Python 3.11 reads on 3.10 too for the offsets
    loggers write: a trailing ``Z`` (UTC) and ``+0100`` (strftime's ``%z``).

    Raises:
        ValueError: Not an ISO-8601 timestamp.
    """
    text = text.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    return datetime.fromisoformat(_COMPACT_OFFSET.sub(r"\1:\2", text))


class MissingFutureError(InputError):
    """A declared known-future column was not given; its values are never filled in."""


# name -> phase in [0, 1) from UTC seconds (int64 numpy datetime64[s])
CALENDAR = ("hour", "dow", "doy")
LEAD_MARK = "@+"  # lead channel names: "<source>@+<H>"


def calendar_features(seconds: np.ndarray, names: list[str] | tuple[str, ...]) -> np.ndarray:
    """Sine/cosine pairs [..., 2 * len(names)] of UTC times given in seconds since 1970 (int64).

    ``hour``: time of day; ``dow``: day of week (Monday 0); ``doy``: day of the year over the
    year's length. Order: ``name_sin, name_cos`` per name, in the order given.
    """
    t = np.asarray(seconds, dtype=np.int64)
    cols = []
    for name in names:
        phase = _phase(t, name)
        cols += [np.sin(2 * np.pi * phase), np.cos(2 * np.pi * phase)]
    return np.stack(cols, axis=-1) if cols else np.zeros((*t.shape, 0))


def _phase(t: np.ndarray, name: str) -> np.ndarray:
    if name == "hour":
        return np.mod(t, 86_400) / _DAY_S
    if name == "dow":
        return np.mod(np.floor_divide(t, 86_400) + 3, 7) / 7.0  # 1970-01-01 was a Thursday
    if name == "doy":
        stamp = t.astype("datetime64[s]")
        year = stamp.astype("datetime64[Y]")
        start = year.astype("datetime64[s]").astype(np.int64)
        end = (year + 1).astype("datetime64[s]").astype(np.int64)
        return (t - start) / (end - start)
    raise ValueError(f"unknown calendar feature '{name}'; known: {list(CALENDAR)}")


def lead_names(calendar: list[str], columns: list[str], lead: int) -> list[str]:
    """Names of the K lead channels: calendar pairs, then the declared columns."""
    sources = [f"{n}_{f}" for n in calendar for f in ("sin", "cos")] + list(columns)
    return [f"{s}{LEAD_MARK}{lead}" for s in sources]


def sensor_features(spec: dict[str, Any]) -> list[str]:
    """The features a caller passes (the spec's features without the lead channels)."""
    future = spec.get("future")
    features = list(spec["features"])
    return features if not future else features[: len(features) - len(future["features"])]


def add_future(window: np.ndarray, spec: dict[str, Any], times: Any, future: Any) -> np.ndarray:
    """Append the lead channels to raw sensor windows [L, F] / [B, L, F] -> [..., F + K].

    A window that already holds F + K columns is returned as it is (the caller built them).

    Args:
        window: Raw sensor values.
        spec: The artifact's spec (``future`` describes the lead channels).
        times: Timestamps of the window's steps ([L] or [B, L]; numpy datetime64, ISO strings,
            ``datetime`` values or seconds since 1970, UTC); needed when the spec has calendar
            features.
        future: ``{column: values}`` for each declared column: its next H values ([H] or
            [B, H]), the readings of the forecast steps.

    Raises:
        InputError: ``times`` or a declared column is missing (``MissingFutureError``), or has
            the wrong shape.
        ArtifactError: ``spec.future`` is malformed.
    """
    info = spec.get("future")
    if not info:
        return window
    n_sensor = len(spec["features"]) - len(info["features"])
    if window.shape[-1] != n_sensor:
        return window  # lead channels given, or a wrong shape that predict reports
    batched = window.ndim == 3
    x = window if batched else window[None]
    leads = [_calendar_leads(x, spec, info, times)] + _column_leads(x, spec, info, future)
    out = np.concatenate([np.asarray(x, dtype=np.float64), *leads], axis=-1)
    return out if batched else out[0]


def _calendar_leads(x: np.ndarray, spec: dict[str, Any], info: dict[str, Any], times: Any):
    names = list(info.get("calendar") or [])
    if not names:
        return np.zeros((*x.shape[:2], 0))
    if times is None:
        raise InputError(
            "window: this model takes calendar features; pass times= (the window's timestamps)"
        )
    last = _last_seconds(times, len(x), x.shape[1])
    period = spec.get("period_s")
    if not period:
        raise ArtifactError("spec.period_s is needed for calendar features")
    steps = np.arange(x.shape[1]) - (x.shape[1] - 1) + int(info["lead"])
    seconds = last[:, None] + np.round(steps * float(period)).astype(np.int64)[None, :]
    return calendar_features(seconds, names)


def _last_seconds(times: Any, batch: int, length: int) -> np.ndarray:
    """UTC seconds of each window's last step, from ``times`` [L] or [B, L]."""
    stamps = np.asarray(times)
    if stamps.shape not in ((length,), (batch, length)) or (stamps.ndim == 1 and batch != 1):
        raise InputShapeError(
            f"window: times= must be [{length}] (one window) or [{batch}, {length}], "
            f"got {list(stamps.shape)}"
        )
    last = stamps.reshape(-1, length)[:, -1]
    if last.dtype.kind == "f" and last.dtype.itemsize < 8:  # float32: 128 s steps in 2024
        raise InputError(
            f"window: times= is {last.dtype}, too coarse for Unix seconds; pass float64 or "
            "integer seconds, datetimes or ISO-8601 text"
        )
    if last.dtype.kind == "M":
        if np.isnat(last).any():
            raise InputError("window: times= holds a missing timestamp (NaT)")
        return last.astype("datetime64[s]").astype(np.int64)
    return np.array([_utc_seconds(v) for v in last.tolist()], dtype=np.int64)


def _utc_seconds(value: Any) -> int:
    """Seconds since 1970 (UTC) of a datetime (naive: UTC), an ISO-8601 string, a datetime64 or
    a number of seconds (floored)."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise InputError(f"window: times= holds {value!r}, not a timestamp")
        return int(math.floor(value))
    if isinstance(value, str):
        text = value.strip()
        try:
            value = from_iso(text)
        except ValueError:
            raise InputError(f"window: times= holds {value!r}, not an ISO-8601 time") from None
    if isinstance(value, np.datetime64) and not np.isnat(value):
        return int(value.astype("datetime64[s]").astype(np.int64))
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        return int(math.floor(aware.timestamp()))
    raise InputError(f"window: times= holds {value!r}, not a timestamp")


def _column_leads(x: np.ndarray, spec: dict[str, Any], info: dict[str, Any], future: Any):
    columns, lead = list(info.get("columns") or []), int(info["lead"])
    if not columns:
        return []
    given = future or {}
    absent = [c for c in columns if c not in given]
    if absent:
        raise MissingFutureError(
            f"window: future= lacks the known-future column(s) {absent} (their next {lead} "
            f"values); they are never filled in"
        )
    features = list(spec["features"])
    out = []
    for name in columns:
        ahead = np.asarray(given[name], dtype=np.float64)
        ahead = ahead.reshape(1, -1) if ahead.ndim == 1 else ahead
        if ahead.shape != (len(x), lead) or not np.isfinite(ahead).all():
            raise InputError(
                f"window: future['{name}'] must be {lead} finite values per window "
                f"([{lead}] or [{len(x)}, {lead}]), got shape {list(ahead.shape)}"
            )
        past = np.asarray(x[:, :, features.index(name)], dtype=np.float64)
        combined = np.concatenate([past, ahead], axis=1)  # steps 0 .. L + H - 1
        out.append(combined[:, lead : lead + x.shape[1], None])
    return out
