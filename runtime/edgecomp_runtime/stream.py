"""Stream: push one sensor reading at a time, get a forecast whenever the window allows.

The stream keeps the last L sampling slots of raw readings (NaN where missing). Timestamps are
placed on slots of the artifact's sampling period (``spec.period_s``), counted from the first
reading and rounded to the nearest slot, so jitter below half a period is absorbed. Then:

* a reading for a new slot advances the window; skipped slots become missing rows;
* a duplicate (same slot as the newest) or late reading (an older slot still in the window) only
  fills values that are missing there, never overwrites one; a reading older than the window is
  dropped. Neither emits a forecast; both are counted in ``stats``;
* once the window spans L slots, a forecast is emitted after every ``every``-th new slot. Missing
  values are filled per the artifact's imputation policy exactly as ``predict`` does (FORMAT.md);
  a window the policy refuses emits nothing (``stats["refused"]``, ``last_refusal``).

Two ways to forecast (``mode``): ``"windowed"`` calls ``Model.predict`` on the window;
``"incremental"`` feeds each new reading to the artifact's step model (see ``step.py``) and is used
only when the manifest's ``stream.allowed`` is true. When an imputed value in the window changes
after it was fed (a late reading, a gap filled by interpolation), the step model is replayed over
the whole window from a zero state.

Known-future inputs (``spec.future``): the stream computes the calendar lead channels itself from
the slot times and the sampling period; declared known-future columns come with each reading as
``future={column: next H values}`` (``push(t, values, future=...)``) and are used when that
reading's forecast is due. A due forecast whose reading lacks one is refused
(``MissingFutureError`` naming the column), never filled in. Models with declared columns stream
windowed; a calendar-only model may use its step model (each slot's calendar never changes).

Graph artifacts (``spec.layout``) also take a reading as an [N, C] array, or a dict node id -> its
C values (see ``edgecomp_runtime.readings``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgecomp_runtime.calendar import MissingFutureError, add_future, from_iso
from edgecomp_runtime.errors import (
    EdgecompRuntimeError,
    EngineUnavailableError,
    InputError,
    ModelOutputError,
    TimestampError,
)
from edgecomp_runtime.preprocess import impute_window
from edgecomp_runtime.readings import Readings, finite, short
from edgecomp_runtime.state import load_state, save_state
from edgecomp_runtime.step import StepRunner, raw_stepper, step_runner, stream_section

# NOTE: ``model`` is a Model (edgecomp_runtime.model), typed Any here: model.py imports this
# module, and the runtime keeps its import graph free of cycles.
Model = Any

MODES = ("auto", "incremental", "windowed")
_SAVED = ("stats", "last_refusal", "_t0", "_slot", "_pending", "_since", "_synced")
COUNTERS = (
    "readings",
    "slots",
    "missing_slots",
    "duplicates",
    "late",
    "too_late",
    "forecasts",
    "replays",
)
_NUMBERS = (int, float, np.integer, np.floating)
_UNITS = ((1e3, "milliseconds"), (1e6, "microseconds"), (1e9, "nanoseconds"))
_YEAR_S = 365.25 * 86400


@dataclass(frozen=True)
class Emitted:
    """A forecast from ``Stream.push_many``: ``t`` the newest slot (s), ``forecast`` [H, F_out]."""

    t: float
    forecast: np.ndarray


class StreamError(EdgecompRuntimeError):
    """A stream cannot be set up or restored as asked; the message says why."""


class Stream:
    """Readings in, forecasts out, for one sensor site. Not thread-safe: one stream per feed.

    Create with ``Model.stream()``.

    Attributes:
        mode: ``"incremental"`` or ``"windowed"``, as chosen.
        mode_reason: Why that mode (e.g. the manifest's verdict on the step model).
        every: A forecast after every ``every``-th new slot.
        period_s: The sampling period in seconds.
        max_ahead_s: A reading more than this many seconds ahead of the gateway's clock is
            refused (``TimestampError``); ``math.inf`` turns the check off.
        stats: Counters: readings, slots (since the start or the last ``reset``), missing_slots,
            duplicates, late, too_late, forecasts, replays (of the step model over the whole
            window), refused, resets.
        last_refusal: The message of the last window the imputation policy refused, or None.
    """

    def __init__(
        self,
        model: Model,
        *,
        every: int = 1,
        mode: str = "auto",
        period_s: float | None = None,
        max_ahead_s: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.model = model
        self.every = _positive_int("every", every)
        self.period_s = _period(model, period_s)
        self.max_ahead_s = _max_ahead(max_ahead_s, self.period_s)
        self.mode, self.mode_reason, self._runner = _choose_mode(model, mode)
        self._raw_step = raw_stepper(model, self._runner)  # native: raw reading -> raw forecast
        self.stats = dict.fromkeys((*COUNTERS, "refused", "resets"), 0)
        self.last_refusal: str | None = None
        self._clock = clock
        self._readings = Readings(model.spec)
        width = len(self._readings.features)
        # the window is a ring of L rows: row ``_head`` is the oldest, ``_head - 1`` the newest
        self._ring = np.full((model.input_len, width), np.nan)
        self._scaled = np.empty(width, dtype=np.float32)  # one scaled reading for the step model
        self._centered = np.empty(width)  # its float64 scratch
        self._start()

    def _start(self) -> None:
        self._ring[:] = np.nan
        self._head = 0
        self._row_nans = [self._ring.shape[1]] * self._ring.shape[0]  # NaN count per ring row
        self._nans = self._ring.size  # their sum: the window's missing values
        self._synced = False  # the step model's state holds the window as last fed
        self._fed: np.ndarray | None = None  # that window, when imputed values were fed
        self._t0: float | None = None
        self._slot = -1  # newest slot
        self._pending = 0  # new slots not yet fed to the step model
        self._since = 0  # new slots since the last forecast
        self._last: tuple[float, np.ndarray] | None = None

    def reset(self) -> None:
        """Forget the window, the position and the last forecast; the counters stay.

        The next reading starts the stream afresh (its timestamp becomes the slot origin).
        """
        self._start()
        self.stats["slots"] = 0
        self.stats["resets"] += 1

    @property
    def window(self) -> np.ndarray:
        """A copy of the raw window [L, F], oldest slot first: NaN where a value is missing."""
        ring, head = self._ring, self._head
        return np.concatenate((ring[head:], ring[:head])) if head else ring.copy()

    @property
    def latest(self) -> tuple[float, np.ndarray] | None:
        """(timestamp of the window's newest slot, forecast [H, F_out]) of the last forecast."""
        return self._last

    def slot_time(self, steps_ahead: int = 0) -> float:
        """Timestamp (s) of the newest slot plus ``steps_ahead`` periods."""
        if self._t0 is None:
            raise StreamError("the stream has no reading yet")
        return self._t0 + (self._slot + steps_ahead) * self.period_s

    def push(self, timestamp: Any, values: Any, future: Any = None) -> np.ndarray | None:
        """Add one reading; return a forecast [H, F_out] in raw units, or None.

        Args:
            timestamp: Seconds since the epoch (int or float), a ``datetime`` (naive = UTC) or an
                ISO 8601 string.
            values: The F feature values in model order (a sequence; NaN or None = missing), or
                a dict feature name -> value (absent features are missing); for a graph
                artifact also [N, C] node values or a dict node id -> values (see
                ``edgecomp_runtime.readings``).
            future: For a model with known-future columns: ``{column: next H values}``, used
                if this reading's forecast is due (a due forecast without it is refused with
                ``MissingFutureError``, an InputError).

        Raises:
            InputError: A bad timestamp, an unknown feature, a value that is not a finite number
                in float32 range (NaN and None excepted); ``InputShapeError`` for the wrong
                number of values; ``TimestampError`` for a time too far ahead of the clock.
                A refused reading leaves the stream as it was.
            ModelOutputError: The model gave a non-finite forecast for this window.
        """
        if self._runner is None:
            (result,) = self.push_many([(timestamp, values, future)])
        else:  # incremental: push_many's bookkeeping for one reading, without its lists
            seconds, row, _, nans = self._check(timestamp, values, future)
            result = self._emit() if self._accept(seconds, row, nans) else None
        if isinstance(result, Exception):
            raise result
        return None if result is None else result.forecast

    def push_many(self, readings: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Add readings (timestamp, values) or (timestamp, values, future) in time order;
        forecasts due are run as one batch.

        Returns:
            One entry per reading, in the given order: an ``Emitted`` forecast, None, or the
            error that refused the reading (``InputError``) or its forecast
            (``ModelOutputError``). Never raises for a bad reading.
        """
        results: list[Any] = [None] * len(readings)
        checked = []
        for i, (timestamp, values, *future) in enumerate(readings):
            try:
                checked.append((*self._check(timestamp, values, *future[:1]), i))
            except InputError as exc:
                results[i] = exc
        checked.sort(key=lambda item: item[0])  # time order; the sort is stable
        due: list[tuple[int, float, np.ndarray, Any]] = []
        for seconds, row, ahead, nans, i in checked:
            if not self._accept(seconds, row, nans):
                continue
            if self._runner is not None:
                results[i] = self._emit()
                continue
            window = self._due_window()
            if window is not None:
                due.append((i, self.slot_time(), window, ahead))
        if due:
            self._predict(due, results)
        return results

    def _check(self, timestamp: Any, values: Any, future: Any = None) -> tuple[Any, ...]:
        row, nans = self._readings.counted(values)
        ahead = None if future is None else self._readings.future(future)
        seconds = _seconds(timestamp)
        now = self._clock()
        if seconds > now + self.max_ahead_s:
            raise TimestampError(_ahead_message(timestamp, seconds, now, self.max_ahead_s))
        return seconds, row, ahead, nans

    def _accept(self, seconds: float, row: np.ndarray, nans: int) -> bool:
        """Place the reading; True when a forecast is due."""
        slot = self._slot_of(seconds)
        self.stats["readings"] += 1
        if slot <= self._slot:
            self._merge(slot, row)
            return False
        self._advance(slot, row, nans)
        return self.stats["slots"] >= self.model.input_len and self._since >= self.every

    def _slot_of(self, seconds: float) -> int:
        if self._t0 is None:
            self._t0 = seconds
        return round((seconds - self._t0) / self.period_s)

    def _merge(self, slot: int, row: np.ndarray) -> None:
        age = self._slot - slot
        kind = "duplicates" if age == 0 else "late" if age < self.model.input_len else "too_late"
        self.stats[kind] += 1
        at = (self._head - 1 - age) % len(self._ring)
        if kind != "too_late" and self._row_nans[at]:  # a row without gaps keeps its values
            target = self._ring[at]
            missing = np.isnan(target)
            target[missing] = row[missing]
            self._count(at, int(np.count_nonzero(np.isnan(target))))

    def _count(self, at: int, nans: int) -> None:
        """Ring row ``at`` now misses ``nans`` values: update the window's count."""
        self._nans += nans - self._row_nans[at]
        self._row_nans[at] = nans

    def _advance(self, slot: int, row: np.ndarray, nans: int) -> None:
        steps = slot - self._slot
        length, width = self._ring.shape
        if steps == 1:  # the common case: the next slot overwrites the oldest row
            at = self._head
            self._ring[at] = row
            self._nans += nans - self._row_nans[at]
            self._row_nans[at] = nans
            self._head = at + 1 if at + 1 < length else 0
            self.stats["slots"] += 1
            self._slot, self._pending, self._since = slot, self._pending + 1, self._since + 1
            return
        if steps >= length:
            self._ring[:] = np.nan
            self._head, self._row_nans, self._nans = 0, [width] * length, self._ring.size
        for at in range(self._head, self._head + min(steps, length) - 1):  # skipped slots
            self._ring[at % length] = np.nan
            self._count(at % length, width)
        at = (self._head + min(steps, length) - 1) % length
        self._ring[at] = row
        self._count(at, nans)
        self._head = (at + 1) % length
        self.stats["slots"] += steps
        self.stats["missing_slots"] += steps - 1
        self._slot, self._pending, self._since = slot, self._pending + steps, self._since + steps

    def _refuse(self, exc: Exception) -> None:
        self.stats["refused"] += 1
        self.last_refusal = str(exc)

    def _due_window(self) -> np.ndarray | None:
        """Windowed mode: the imputed window to forecast, or None when the policy refuses it."""
        window = self.window
        if self._nans:
            try:
                window = impute_window(window[None], self.model._policy, features=self.features)[0]
            except InputError as exc:
                self._refuse(exc)
                return None
        self._since = 0
        return window

    @property
    def features(self) -> list[str]:
        """The F sensor columns of a reading, in order (the model's inputs without the
        known-future lead channels, which the stream builds)."""
        return self._readings.features

    def window_times(self, t: float) -> np.ndarray:
        """Seconds of the L slots of the window whose newest slot is at ``t``."""
        steps = np.arange(self.model.input_len) - (self.model.input_len - 1)
        return t + steps * self.period_s

    def _predict(self, due: list[tuple[int, float, np.ndarray, Any]], results: list[Any]) -> None:
        """One ``predict`` for every window due; per window again only when the batch fails."""
        ready = [item for item in due if self._has_future(item, results)]
        if not ready:
            return
        windows = np.stack([window for _, _, window, _ in ready])
        times = np.stack([self.window_times(t) for _, t, _, _ in ready])
        future = {c: np.stack([a[c] for *_, a in ready]) for c in self._readings.columns}
        try:
            forecasts = list(self.model.predict(windows, times=times, future=future or None))
        except (InputError, ModelOutputError):
            forecasts = [self._predict_one(*item[1:]) for item in ready]
        for (i, t, _, _), forecast in zip(ready, forecasts, strict=True):
            if isinstance(forecast, Exception):
                self._refuse(forecast)
                results[i] = forecast
                continue
            self.stats["forecasts"] += 1
            self._last = (t, forecast)
            results[i] = Emitted(t, forecast)

    def _has_future(self, item: tuple[int, float, np.ndarray, Any], results: list[Any]) -> bool:
        """True when the reading brings every declared known-future column, else refused."""
        absent = [c for c in self._readings.columns if c not in (item[3] or {})]
        if absent:
            exc = MissingFutureError(
                f"reading: a forecast is due and future lacks the known-future column(s) "
                f"{absent} (their next {self.model.horizon} values); they are never filled in"
            )
            self._refuse(exc)
            results[item[0]] = exc
        return not absent

    def _predict_one(self, t: float, window: np.ndarray, ahead: Any) -> Any:
        try:
            return self.model.predict(window, times=self.window_times(t), future=ahead)
        except (InputError, ModelOutputError) as exc:
            return exc

    def _emit(self) -> Any:
        """Incremental mode: feed the step model; an ``Emitted``, None (refused) or the error."""
        try:
            forecast = self._forecast()
        except ModelOutputError as exc:
            self._refuse(exc)
            return exc
        except InputError as exc:  # the imputation policy refuses this window
            self._refuse(exc)
            return None
        self._since = 0
        self.stats["forecasts"] += 1
        self._last = (self.slot_time(), forecast)
        return Emitted(*self._last)

    def _forecast(self) -> np.ndarray:
        steps = self._pending
        fresh = self._synced and self._fed is None and 0 < steps < len(self._ring)
        if fresh and not self._nans and not self.model.spec.get("future"):
            if self._raw_step is not None:
                return self._feed_raw(steps)
            return self._unscaled(self._feed_new(steps))  # the common case: new rows as read
        window, missing = self.window, self._nans > 0
        if missing:
            window = impute_window(window[None], self.model._policy, features=self.features)
            window = window[0]
        # NOTE: values fed as read never change (late readings only fill gaps); imputed ones may
        if not self._synced or steps >= len(window) or self._changed(window, steps):
            self._runner.reset()  # first window, long gap, or an old value changed: replay
            steps = len(window)
            self.stats["replays"] += 1
        self._synced, self._pending = True, 0
        self._fed = window if missing else None  # ``window`` is a copy: ours to keep
        if self.model.spec.get("future"):  # calendar leads of the slots (no declared columns)
            window = add_future(window, self.model.spec, self.window_times(self.slot_time()), None)
        for row in self.model.scale_window(window[-steps:]):
            y = self._runner.step(row)
        return self._unscaled(y)

    def _feed_new(self, steps: int) -> np.ndarray:
        """Feed the ``steps`` newest ring rows (NaN-free) to the step model; its last output."""
        self._pending = 0
        mean, inv_std = self.model._scalers[np.float64]  # as predict scales a float64 window
        centered, scaled = self._centered, self._scaled
        for at in range(self._head - steps, self._head):
            np.subtract(self._ring[at], mean, out=centered)  # NOTE: at < 0 wraps around
            np.multiply(centered, inv_std, out=centered)
            scaled[...] = centered
            y = self._runner.step(scaled)
        return y

    def _feed_raw(self, steps: int) -> np.ndarray:
        """``_feed_new`` then ``_unscaled`` on the native stepper: one kernel call per row."""
        self._pending = 0
        for at in range(self._head - steps, self._head):  # NOTE: at < 0 wraps around
            y, ok = self._raw_step(self._ring[at])
        if not ok:
            raise ModelOutputError(
                f"{self._runner.name}: the step model's forecast is not finite for a finite "
                "window within float32 range"
            )
        return y

    def _unscaled(self, y: np.ndarray) -> np.ndarray:
        """The step model's scaled forecast (a new array, ours) in raw units, in place."""
        forecast = self.model.unscale_forecast(y, copy=False)
        if not finite(forecast):
            raise ModelOutputError(
                f"{self._runner.name}: the step model's forecast is not finite for a finite "
                "window within float32 range"
            )
        return forecast

    def _changed(self, window: np.ndarray, steps: int) -> bool:
        return self._fed is not None and not np.array_equal(window[:-steps], self._fed[steps:])

    def save(self, path: str | Path) -> Path:
        """Write the stream's state to ``path`` atomically (temp file, fsync, rename).

        A power loss leaves the previous state file or the new one, never a torn file. Restore
        with ``model.stream(resume=path)``.
        """
        meta = {key: getattr(self, key) for key in _SAVED}
        meta.update(artifact=_identity(self.model), mode=self.mode, period_s=self.period_s)
        arrays = {"window": self.window, "fed": _or_empty(self._fed)}
        arrays["state"] = _or_empty(None if self._runner is None else self._runner.state)
        arrays["forecast"] = _or_empty(None if self._last is None else self._last[1])
        meta["last_time"] = None if self._last is None else self._last[0]
        return save_state(Path(path), meta, arrays)

    def _restore(self, path: str | Path) -> None:
        meta, arrays = load_state(Path(path))
        where = f"{path}: stream state"
        if meta.get("artifact") != _identity(self.model):
            raise StreamError(f"{where} was saved for another artifact")
        if meta.get("period_s") != self.period_s:
            raise StreamError(f"{where} has period {meta.get('period_s')} s, not {self.period_s}")
        if arrays["window"].shape != self._ring.shape:
            raise StreamError(f"{where} holds a window of shape {list(arrays['window'].shape)}")
        _check_meta(meta, where)
        for key in _SAVED:
            setattr(self, key, meta[key])
        self.stats = {**dict.fromkeys((*COUNTERS, "refused", "resets"), 0), **meta["stats"]}
        self._ring = arrays["window"].astype(np.float64)
        self._head = 0
        self._row_nans = [int(n) for n in np.isnan(self._ring).sum(axis=1)]
        self._nans = sum(self._row_nans)
        self._synced = self._synced and self._runner is not None and meta["mode"] == self.mode
        if self._synced:
            self._fed = arrays["fed"] if arrays["fed"].size else None
            self._runner.state = (
                arrays["state"].astype(np.float32).reshape(self._runner.state.shape)
            )
        last, shape = arrays["forecast"], (self.model.horizon, len(self.model.targets))
        if meta["last_time"] is not None and last.shape == shape:
            self._last = (meta["last_time"], last.astype(np.float32))


def _check_meta(meta: dict[str, Any], where: str) -> None:
    ints = ("_slot", "_pending", "_since")
    stats = meta.get("stats")
    ok = (
        all(isinstance(meta.get(key), int) for key in ints)
        and isinstance(meta.get("_synced"), bool)
        and isinstance(meta.get("_t0"), int | float | None)
        and isinstance(stats, dict)
        and all(isinstance(stats.get(key), int) for key in (*COUNTERS, "refused"))
    )
    if not ok:
        raise StreamError(f"{where} is malformed (counters or positions of the wrong type)")


def _identity(model: Model) -> str:
    """The sha256 of the artifact's model file: a state belongs to one artifact."""
    name = model.manifest["model_file"]
    return next(e["sha256"] for e in model.manifest["files"] if e["name"] == name)


def _or_empty(array: np.ndarray | None) -> np.ndarray:
    return np.zeros(0) if array is None else np.asarray(array)


def _choose_mode(model: Model, mode: str) -> tuple[str, str, StepRunner | None]:
    if mode not in MODES:
        raise StreamError(f"mode must be one of {list(MODES)}, got {mode!r}")
    section = stream_section(model.manifest)
    if mode == "windowed":
        return "windowed", "asked for", None
    if (model.spec.get("future") or {}).get("columns"):
        reason = "the model takes known-future columns, given anew with each forecast"
    elif section is None:
        reason = "the artifact has no step model (built without the lowering option stream=true)"
    else:
        try:
            runner = step_runner(model, section)
        except EngineUnavailableError as exc:  # step models run on onnxruntime
            reason = f"the step model needs onnxruntime: {exc}"
        else:
            verdict = _verdict(section, runner)
            if verdict["allowed"]:
                why = (
                    "exact" if verdict.get("exact", section["exact"]) else "within the error budget"
                )
                return "incremental", f"step model {section['kind']}, {why}", runner
            reason = f"the manifest does not allow its step model: {verdict.get('reason', '')}"
    if mode == "incremental":
        raise StreamError(f"cannot stream incrementally: {reason}")
    return "windowed", reason, None


def _verdict(section: dict[str, Any], runner: StepRunner) -> dict[str, Any]:
    """The build's stream verdict for the step path that runs: a build on the native engine
    measured its native step (``step_path: native``) and the step model the gateway falls back to
    (``fallback``); a runner not on the native stepper goes by the fallback's."""
    fallback = section.get("fallback")
    if section.get("step_path") == "native" and runner.native is None and fallback is not None:
        return fallback
    return section


def _period(model: Model, period_s: float | None) -> float:
    if (model.spec.get("data") or {}).get("grid") == "business-day":  # weekends are no slots
        raise StreamError(
            "the artifact was trained on a business-day grid (weekdays only); a stream would "
            "count weekends as missing slots: call predict on the last L weekday readings"
        )
    value = period_s if period_s is not None else model.spec.get("period_s")
    if value is None:
        raise StreamError("the artifact has no sampling period (spec.period_s); pass period_s=")
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise StreamError(f"period_s must be a positive number of seconds, got {value!r}")
    return float(value)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StreamError(f"{name} must be a positive integer, got {value!r}")
    return value


def _seconds(timestamp: Any) -> float:
    if isinstance(timestamp, str):
        try:
            timestamp = from_iso(timestamp)
        except ValueError:
            raise InputError(f"reading: timestamp {timestamp!r:.40} is not ISO 8601") from None
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            timestamp = timestamp.replace(tzinfo=timezone.utc)
        return timestamp.timestamp()
    if isinstance(timestamp, np.datetime64) and not np.isnat(timestamp):  # a DataFrame's index
        return float(timestamp.astype("datetime64[us]").astype(np.int64)) / 1e6
    if isinstance(timestamp, np.floating) and timestamp.itemsize < 8:
        raise InputError(
            f"reading: timestamp {short(timestamp)} is a {timestamp.dtype} number, precise to "
            f"{float(np.spacing(abs(timestamp))):g} s there; send float64 or integer seconds"
        )
    if isinstance(timestamp, bool) or not isinstance(timestamp, _NUMBERS):
        raise InputError(
            f"reading: timestamp must be seconds, a datetime or ISO 8601, got {short(timestamp)}"
        )
    try:
        seconds = float(timestamp)
    except OverflowError:
        raise InputError(f"reading: timestamp {short(timestamp)} is out of range") from None
    if not math.isfinite(seconds):
        raise InputError(f"reading: timestamp {seconds} is not finite")
    return seconds


def _max_ahead(value: float | None, period_s: float) -> float:
    if value is None:
        return max(2 * period_s, 300.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise StreamError(f"max_ahead_s must be a number of seconds >= 0, got {value!r}")
    return float(value)


def _ahead_message(timestamp: Any, seconds: float, now: float, limit: float) -> str:
    clock = datetime.fromtimestamp(now, tz=timezone.utc).isoformat(timespec="seconds")
    text = (
        f"reading: timestamp {short(timestamp)} is {seconds - now:.3g} s ahead of the gateway's "
        f"clock ({clock}), more than max_ahead_s={limit:g}"
    )
    for factor, unit in _UNITS:
        if abs(seconds / factor - now) < 30 * _YEAR_S:
            return f"{text}; it looks like {unit} since the epoch: send seconds"
    return text
