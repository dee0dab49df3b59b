"""Read a sensor table (CSV, TSV or TXT, plain or compressed, or Parquet; wide or long) into a
wide frame on a regular grid.

Rules, in the order ``load_table`` applies them:

* Time column: ``time_col`` if given, else the first column named one of ``TIME_NAMES``
  (case-insensitive), else the only datetime-typed column, else one built from columns named
  year, month and day (and hour, minute), with a note. A time column of dates only is joined
  with a column of clock times (``Date;Time``, ``07:05`` or ``07:05:00``; either may come
  first), with a note; a time column of clock times with no dates beside it is refused.
  Timestamps are parsed to UTC (naive strings are taken as UTC, offsets are converted) and the
  timezone is then dropped: the returned index is tz-naive UTC. A numeric time column is read
  as Unix time in seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude;
  numbers that are all between 20000 and 80000 (spreadsheet serial dates, days since 1899-12-30,
  which as seconds would all fall on 1970-01-01) are refused.
* Layout: ``"long"`` when ``id_col`` is given, or (with ``layout="auto"``) when a column named
  one of ``ID_NAMES`` (or ending in ``_id``) exists and timestamps repeat; else ``"wide"``.
* Value columns, unless given: the numeric columns minus the time and id columns and minus the
  calendar columns ``CALENDAR_NAMES`` (year, month, day, hour, minute), which are derived from the
  timestamp. Text columns are skipped; a column holding numbers and some text is an error. An
  integer column that is constant over the whole file (a label such as ``intersection``) is
  skipped too; so is a saved row index (distinct integers under a blank header, as
  ``DataFrame.to_csv`` writes by default, or an ``index`` column counting up by one), and so is
  a column with neither a header nor a value (a delimiter ending every line). Every skipped
  column is listed in ``TableReport.notes``.
* Feature names: wide: the column names; long: ``f"{id}"`` with one value column, else
  ``f"{id}_{value_col}"``, ordered by id then value column.
* Jitter: timestamps at most 5 % of the period off a grid (the median step rounded to a whole
  day, hour, ..., minute, second, ... or millisecond, the coarsest that fits) are snapped onto
  it, with a note.
* Grid: the sampling period is the most common step between sorted timestamps; missing grid steps
  are inserted as NaN rows (``regularize=True``) and reported as gaps. Daily data with no weekend
  rows is a business-day series: its grid holds weekdays only, so weekends are not gaps.
  Monthly, quarterly and yearly data (month starts or ends at midnight) is refused by name: a
  calendar month is no fixed period.
* Header: names are stripped of surrounding spaces (as the runtime reads a window's header); a
  name given twice is refused. A file starting with a UTF-16 byte-order mark is read as UTF-16.
  Blank, '#' comment and title lines (no delimiter) above the header are skipped, with a note.

Bad data (``load_table`` here, ``prepare`` in prep.py). Every refusal is a one-line ``DataError``
naming the file and the column:

* Gaps: inserted as NaN rows and reported (``n_gap_steps``, ``gaps``, ``missing``); ``prepare``
  imputes them and names the columns with a gap longer than ``interpolate_limit`` (forward filled
  there, while the runtime refuses a window missing more than ``max_missing_fraction`` of a
  column).
* Duplicated timestamps (wide) or (time, id) pairs (long): with ``on_duplicate="error"`` (the
  default) refused with the timestamp and data rows, exact duplicate rows too (a repeated row
  usually means a bad export or concatenation); ``"first"`` / ``"last"`` keep the first / last
  row of each duplicate group, ``"mean"`` averages its values (missing ones skipped). The refusal
  hints at daylight-saving changes only when the timestamps carry a clock time.
* Excluded columns (``exclude``): file columns or feature names left out by name; a name that is
  neither is refused, listing the columns.
* Rows out of time order: sorted, with a note.
* Unit spikes: ``prepare`` names columns whose robust z-score against the train split exceeds 20;
  ``DataConfig.spike_threshold`` (off by default) sets such values to missing.
* Constant columns: a constant integer column is skipped as a label (noted); a feature constant
  over the train split is noted by ``prepare`` and its std floored.
* Empty columns: columns with no value are refused in one error naming them all (kept with
  ``keep_empty``, for ``prepare``'s ``drop_sparse``); ``prepare`` refuses columns with no value
  in a split, naming each column and split.
* Flags: ``True``/``False`` (bool columns, or the text ``true``/``false`` in any case) read as
  1/0, by the same rule as the runtime (``edgecomp_runtime.tabular``).
* Mixed types: the markers ``MISSING_MARKERS`` (empty, NA, N/A, nan, null, none, -; any case,
  spaces ignored) are missing values; any other text in a numeric column is refused naming the
  value, its timestamp and data row. Decimal commas ("12,5") are refused with a hint, not
  guessed, in a comma-delimited file; a file delimited by ';' or tabs (its header has no comma)
  reads them as decimal points when its first lines hold one. Infinite values, and values beyond
  float32's range (what models and the runtime compute in), are refused.
* Day/month order: dates written NN/NN/YYYY are read day first when a first number exceeds 12,
  month first when a second one does, and refused when none does (write ISO 8601 dates).
* Time zones: offsets (``Z``, ``+02:00``, mixed ones too) are converted to UTC; naive timestamps
  are taken as UTC as given; a column mixing naive and offset timestamps is refused.
* Daylight-saving changes: naive local times lose an hour in spring (a reported gap) and repeat
  one in autumn (refused as a duplicate, with a hint to export UTC or offsets); local times with
  offsets across a change give a continuous UTC series.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import lzma
import re
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from edgecomp.dataflags import ON_DUPLICATE
from edgecomp_runtime.tabular import BOOL_TEXT, MISSING_TEXT

TIME_NAMES = ("time", "timestamp", "date", "datetime", "time_hour")
ID_NAMES = ("id", "series", "station", "sensor", "detector", "origin", "symbol")
CALENDAR_NAMES = frozenset({"year", "month", "day", "hour", "minute"})
LAYOUTS = ("auto", "wide", "long")
MAX_GAPS_LISTED = 20
MAX_GRID_GROWTH = 10  # refuse a grid more than this many times the observed rows (+1000)
MISSING_MARKERS = MISSING_TEXT  # case-insensitive; the runtime reads CSV cells by the same rule
_OFFSET = re.compile(r"(?:Z|UTC|GMT|[+-]\d\d:\d\d|[+-]\d{4})$", re.IGNORECASE)
_DECIMAL_COMMA = re.compile(r"^[+-]?\d+(?:,\d+)+$")
_CLOCK = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?")  # 7:05, 07:05:00, 07:05:00.250
_BLANK_HEADER = re.compile(r"^Unnamed: \d+$")  # pandas' name for a column with no header
_SLASH_DATE = re.compile(r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-]\d{4}(?:\D|$)")  # 05/01/2024 ...
_ZONE_NAME = re.compile(r"\d\s*\(?[A-Z]{2,5}\)?$|\s[A-Z][a-z]+/[A-Za-z_]+$")  # EST, Europe/Paris
_LOCAL_HINT = "if these are local times across a DST change, export UTC or timestamps with offsets"
_DAY_NS = 86_400 * 10**9
_TEXT_SUFFIXES = tuple(
    f".{kind}{packed}"
    for kind in ("csv", "tsv", "txt")
    for packed in ("", ".gz", ".bz2", ".xz", ".zip")
)
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_SNIFF_LINES = 200  # lines read to tell the delimiter and decimal mark of a CSV
_MAX_JITTER = 0.05  # timestamps at most this share of the period off its grid are snapped
_ROUNDINGS = tuple(  # ns: the period of a jittered grid is its median step rounded to one of these
    int(s * 1e9) for s in (1e-3, 1e-2, 0.1, 1, 10, 60, 300, 600, 900, 1800, 3600, 86_400)
)
_SERIAL_DAYS = (20_000, 80_000)  # spreadsheet serial dates of 1954-10 to 2119-01, as numbers
_EPOCH_UNITS = (("s", 1e11), ("ms", 1e14), ("us", 1e17))  # numeric times: unit by magnitude
_NS_MIN, _NS_MAX = pd.Timestamp.min, pd.Timestamp.max  # the range of a nanosecond timestamp
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class DataError(ValueError):
    """Bad input data; the one-line message names the file and the column."""


@dataclass(frozen=True)
class TableReport:
    """What ``load_table`` found in a file.

    Attributes:
        path: The file read.
        layout: "wide" or "long" (as resolved).
        rows: Rows of the returned frame (the regular grid when regularized).
        columns: Feature names, in order.
        period_s: Sampling period in seconds (most common step).
        seasonal_period: Steps per day when the period divides a day and is under a day, else None.
        n_gap_steps: Grid steps with no row in the file.
        gaps: Up to ``MAX_GAPS_LISTED`` spans (first missing, last missing, steps), ISO timestamps.
        missing: NaN count per feature column of the returned frame.
        time_col: The time column used.
        id_col: The id column used (long layout), else None.
        value_cols: The value columns used.
        notes: Decisions worth knowing (skipped columns, business-day grid, ...).
        date_order: "day-first" or "month-first" for dates written NN/NN/YYYY, else None.
    """

    path: str
    layout: str
    rows: int
    columns: list[str]
    period_s: float
    seasonal_period: int | None
    n_gap_steps: int
    gaps: list[tuple[str, str, int]]
    missing: dict[str, int]
    time_col: str = ""
    id_col: str | None = None
    value_cols: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    date_order: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["gaps"] = [list(g) for g in self.gaps]
        return out


def load_table(
    path: str | Path,
    *,
    time_col: str | None = None,
    id_col: str | None = None,
    value_cols: tuple[str, ...] | list[str] | None = None,
    layout: str = "auto",
    regularize: bool = True,
    exclude: tuple[str, ...] | list[str] = (),
    on_duplicate: str = "error",
    keep_empty: bool = False,
) -> tuple[pd.DataFrame, TableReport]:
    """Read a CSV / CSV.gz / Parquet table into a wide float64 frame on a regular time grid.

    Args:
        path: The file.
        time_col: Time column; detected when None (see the module docstring).
        id_col: Series id column of a long table; detected when None and ``layout`` allows.
        value_cols: Value columns; numeric non-calendar columns when None.
        layout: "auto", "wide" or "long".
        regularize: Insert missing grid steps as NaN rows (False: keep the file's rows only).
        exclude: File columns or feature names to leave out.
        on_duplicate: "error", "first", "last" or "mean" (see the module docstring).
        keep_empty: Keep columns with no value instead of refusing them.

    Returns:
        The frame (tz-naive UTC DatetimeIndex, one float64 column per feature) and a TableReport.

    Raises:
        DataError: Unreadable file, bad timestamps, duplicates, empty or non-numeric columns.
    """
    path = Path(path)
    if on_duplicate not in ON_DUPLICATE:
        raise DataError(f"on_duplicate '{on_duplicate}' unknown; expected one of {ON_DUPLICATE}")
    df = _read(path)
    preamble = list(df.attrs.get("notes", []))
    df, blank_notes = _drop_blank(df)
    blank_notes = preamble + blank_notes
    exclude = rejoin_names(exclude, df.columns)  # --exclude "Temp, C": one column
    try:
        tcol = _time_column(df, time_col, path)
    except DataError:  # no time column: one built from year, month, day columns, if any
        df, part_notes = _join_parts(df, time_col, path)
        if not part_notes:
            raise
        tcol, blank_notes = "time", blank_notes + part_notes
    tcol = _dated(df, tcol, path)
    df, clock_notes = _join_clock(df, tcol)
    parsed, date_order = _parse_times(df[tcol], path, tcol)
    _refuse_calendar_months(parsed, path, tcol)  # before snapping: years would fit a 365-day grid
    times, snap_notes = _snap_jitter(parsed)
    clock_notes += snap_notes
    body = df.drop(columns=[tcol])
    resolved, icol = _resolve_layout(body, times, layout, id_col, path)
    dropped = [c for c in exclude if c in body.columns and c != icol]
    vcols, notes = _value_columns(body, times, {icol, *dropped} - {None}, value_cols, path)
    notes = blank_notes + clock_notes + notes
    data = pd.DataFrame({c: _to_float(body[c], c, path, times) for c in vcols}, index=times)
    if icol:
        data.index = pd.MultiIndex.from_arrays([times, _ids(body, icol, path)], names=[tcol, icol])
    keys = [tcol, icol] if icol else [tcol]
    hint = "" if icol or on_duplicate != "error" else _id_hint(body, times, vcols)
    data, dup_notes = _dedupe(data, on_duplicate, path, keys, hint)
    frame = _pivot(data, icol, vcols, path) if icol else data
    notes += dup_notes + _exclude(frame, exclude, dropped, list(df.columns), path)
    frame = frame.drop(columns=[c for c in exclude if c in frame.columns])
    if not keep_empty:
        _check_not_empty(frame, path)
    if not frame.index.is_monotonic_increasing:
        notes.append(f"rows not in time order (column '{tcol}'): sorted")
        frame = frame.sort_index(kind="stable")
    frame, grid_info = _regularize(frame, path, tcol, regularize)
    notes += grid_info.pop("notes")
    report = TableReport(
        path=str(path),
        layout=resolved,
        rows=len(frame),
        columns=list(frame.columns),
        missing={c: int(n) for c, n in frame.isna().sum().items()},
        time_col=tcol,
        id_col=icol,
        value_cols=list(vcols),
        notes=notes,
        date_order=date_order,
        **grid_info,
    )
    return frame, report


def _read(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        reader = pd.read_parquet
    elif name.endswith(_TEXT_SUFFIXES):
        reader = pd.read_csv
    else:
        raise DataError(
            f"{path}: unsupported file type; expected .csv, .tsv or .txt (plain, or .gz, .bz2, "
            ".xz, .zip), or .parquet"
        )
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        df = reader(path) if reader is pd.read_parquet else _read_csv(path)
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zlib.error) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read: {first}") from None
    if not isinstance(df.index, pd.RangeIndex):  # a Parquet file saved with its time index
        df = df.reset_index()
    df.columns = [str(c) for c in df.columns]
    if df.empty:
        raise DataError(f"{path}: the table has no rows")
    return df


def _drop_blank(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``df`` without columns that have neither a header nor a value (a delimiter at the end of
    every line), with a note."""
    blank = [c for c in df.columns if _BLANK_HEADER.match(c) and df[c].isna().all()]
    if not blank:
        return df, []
    note = f"skipped {len(blank)} column(s) with no header and no value (a trailing delimiter?)"
    return df.drop(columns=blank), [note]


def _read_csv(path: Path) -> pd.DataFrame:
    """``read_csv`` in the file's dialect; a file that is not UTF-8 is read as Windows-1252
    (what spreadsheets on Windows write: station names with accents, units such as °C), one
    with a UTF-16 byte-order mark as UTF-16 (Excel's "Unicode Text")."""
    options = _csv_dialect(path)
    if not options.get("encoding"):
        try:
            return _noted(_header_checked(pd.read_csv(path, **options), path, options), options)
        except UnicodeDecodeError:
            options["encoding"] = "cp1252"
    return _noted(_header_checked(pd.read_csv(path, **options), path, options), options)


def _noted(df: pd.DataFrame, options: dict[str, Any]) -> pd.DataFrame:
    """``df`` with a note (``df.attrs["notes"]``) on the lines skipped above its header."""
    if options.get("skiprows"):
        df.attrs["notes"] = [f"skipped {options['skiprows']} line(s) above the header"]
    return df


def _header_checked(df: pd.DataFrame, path: Path, options: dict[str, str]) -> pd.DataFrame:
    """``df`` with its column names as the header writes them, spaces around them stripped (as
    the runtime reads a header); a name given twice is refused (pandas would rename the second
    'temp' to 'temp.1', a name the runtime would not find)."""
    header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False, **options)
    raw = [str(name).strip() for name in header.iloc[0]] if len(header) else []
    if len(raw) != len(df.columns):  # a header row with fewer cells than the rows: as pandas reads
        return df
    names = [name or str(given) for name, given in zip(raw, df.columns, strict=True)]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise DataError(
                f"{path}: the header names column '{name}' twice (columns {seen[name] + 1} and "
                f"{i + 1}); rename one"
            )
        seen[name] = i
    return df.set_axis(names, axis=1)


def _csv_dialect(path: Path) -> dict[str, Any]:
    """``read_csv`` options for the file's delimiter: ',' unless the header has none and has ';',
    a tab or '|'; with ';' or a tab, cells such as "12,5" make ',' the decimal mark; and
    ``encoding`` "utf-16" for a file that starts with a UTF-16 byte-order mark."""
    suffix = path.suffix.lower()
    if suffix == ".zip":  # pandas opens it; the sniffer does not: commas
        return {}
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(suffix, open)
    with opener(path, "rb") as f:
        wide = f.read(2) in _UTF16_BOMS
    encoding = {"encoding": "utf-16"} if wide else {}
    with opener(path, "rt", encoding="utf-16" if wide else "utf-8", errors="replace") as f:
        head = [line for _, line in zip(range(_SNIFF_LINES), f, strict=False)]
    skip = _preamble(head)
    head, base = head[skip:], encoding | ({"skiprows": skip} if skip else {})
    if not head or "," in head[0]:
        return base
    sep = next((c for c in (";", "\t", "|") if c in head[0]), None)
    if sep is None:
        return base
    cells = (cell.strip().strip('"') for line in head[1:] for cell in line.split(sep))
    if sep != "|" and any(_DECIMAL_COMMA.match(cell) for cell in cells):
        return {"sep": sep, "decimal": ",", **base}
    return {"sep": sep, **base}


def _preamble(head: list[str]) -> int:
    """How many lines before the header to skip: blank lines, '#' comments and title lines with
    no delimiter, when a later line has one (a logger's metadata above its table)."""

    for i, line in enumerate(head):
        text = line.strip()
        if text and not text.startswith("#") and any(c in text for c in ",;\t|"):
            return i
    return 0


def _time_column(df: pd.DataFrame, time_col: str | None, path: Path) -> str:
    if time_col is not None:
        if time_col not in df.columns:
            raise DataError(
                f"{path}: time column '{time_col}' not found; columns: {_few(df.columns)}"
            )
        return time_col
    for col in df.columns:
        if col.lower() in TIME_NAMES:
            return col
    typed = [c for c in df.columns if ptypes.is_datetime64_any_dtype(df[c])]
    if not typed:
        typed = [c for c in df.columns if _looks_like_times(df[c])]
    if len(typed) == 1:
        return typed[0]
    raise DataError(
        f"{path}: missing time column (no column named one of {list(TIME_NAMES)} and no single "
        f"column of timestamps); pass --time-col (time_col); columns: {_few(df.columns)}"
        f"{_transposed_hint(df.columns)}"
    )


def _transposed_hint(columns: pd.Index) -> str:
    """A hint for a table with the time across its header (one row per series)."""
    names = pd.Series([str(c) for c in columns])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        stamps = pd.to_datetime(names, errors="coerce", format="mixed")
    dated = names.str.contains(r"\d{4}") & stamps.notna()
    if dated.sum() < 3 or dated.mean() < 0.5:
        return ""
    return (
        f"; {int(dated.sum())} column names are timestamps: one row per series and one column "
        f"per time? transpose it (a time column, then one column per series)"
    )


def _dated(df: pd.DataFrame, tcol: str, path: Path) -> str:
    """``tcol``, or when it holds clock times only ('07:05'), the column of dates beside it
    (joined with it by ``_join_clock``); refused when there is none: pandas would date the
    times today, a different date each day the command runs."""
    col = df[tcol]
    if not (ptypes.is_object_dtype(col) or ptypes.is_string_dtype(col)):
        return tcol
    text = col.dropna().astype(str).str.strip()
    if text.empty or not text.str.fullmatch(_CLOCK).all():
        return tcol
    dates = [c for c in df.columns if c != tcol and _looks_like_times(df[c])]
    if len(dates) == 1:
        return dates[0]
    raise DataError(
        f"{path}: column '{tcol}' holds clock times with no date ({text.iloc[0]!r}); give the "
        f"date too (in the column or in a column of dates beside it), or pass --time-col"
    )


def _join_parts(
    df: pd.DataFrame, time_col: str | None, path: Path
) -> tuple[pd.DataFrame, list[str]]:
    """For a table with no time column (``_time_column`` found none) but year, month and day
    columns (and hour, minute): a ``time`` column built from them, with a note; the parts stay
    (skipped as calendar columns)."""
    names = {c.lower(): c for c in df.columns}
    parts = [p for p in ("year", "month", "day", "hour", "minute") if p in names]
    if time_col is not None or "time" in df.columns or parts[:3] != ["year", "month", "day"]:
        return df, []
    cells = {p: pd.to_numeric(df[names[p]], errors="coerce") for p in parts}
    stamps = pd.to_datetime(pd.DataFrame(cells), errors="coerce")
    bad = np.flatnonzero(stamps.isna().to_numpy())
    if bad.size:
        i = int(bad[0])
        given = ", ".join(f"{names[p]} {df[names[p]].astype(str).iloc[i]}" for p in parts)
        raise DataError(
            f"{path}: no time column, and columns {', '.join(names[p] for p in parts)} give no "
            f"date at data row {i + 1} ({given}; {bad.size} such rows)"
        )
    used = ", ".join(names[p] for p in parts)
    return df.assign(time=stamps), [f"time: built from the columns {used} (taken as UTC)"]


def _join_clock(df: pd.DataFrame, tcol: str) -> tuple[pd.DataFrame, list[str]]:
    """A time column of dates only, with the clock times in another column (a logger's
    ``Date;Time``): the two joined into timestamps in ``tcol``, the clock column dropped."""
    dates = df[tcol]
    if not (ptypes.is_object_dtype(dates) or ptypes.is_string_dtype(dates)):
        return df, []
    text = dates.dropna().astype(str).str.strip()
    if text.empty or text.str.contains(":").any() or not text.str.contains(r"\d{4}").all():
        return df, []
    if not text.duplicated().any():  # one row a day: a daily file (a clock column is data)
        return df, []
    for col in df.columns:
        values = df[col]
        if col == tcol or not (ptypes.is_object_dtype(values) or ptypes.is_string_dtype(values)):
            continue
        clock = values.astype(str).str.strip()
        if values.notna().all() and clock.str.fullmatch(_CLOCK).all():
            joined = dates.astype(str).str.strip() + " " + clock
            out = df.drop(columns=[col]).assign(**{tcol: joined.where(dates.notna())})
            return out, [f"time: dates in '{tcol}' joined with the clock times in '{col}'"]
    return df, []


def _looks_like_times(col: pd.Series) -> bool:
    """True for a text column whose first 20 values all parse as dates with a year."""
    if not (ptypes.is_object_dtype(col) or ptypes.is_string_dtype(col)):
        return False
    head = col.dropna().astype(str).head(20)
    if head.empty or not head.str.contains(r"\d{4}", regex=True).all():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        parsed = pd.to_datetime(head, errors="coerce", utc=True, format="mixed")
    return bool(parsed.notna().all())


def _parse_times(col: pd.Series, path: Path, name: str) -> tuple[pd.DatetimeIndex, str | None]:
    """The timestamps, and the order of dates written NN/NN/YYYY ("day-first", "month-first")."""
    order = None
    if ptypes.is_numeric_dtype(col) and not ptypes.is_bool_dtype(col):
        parsed = _epoch_times(col, path, name)
    else:
        order = _date_order(col, path, name)
        dayfirst = order == "day-first"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "could not infer format": retried below
            parsed = pd.to_datetime(col, utc=True, errors="coerce", dayfirst=dayfirst)
            if (parsed.isna() & col.notna()).any():
                parsed = pd.to_datetime(
                    col, utc=True, errors="coerce", format="mixed", dayfirst=dayfirst
                )
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        i = int(bad[0])
        value = col.iloc[i]
        shown = repr(value) if isinstance(value, str) else str(value)  # not np.float64(...)
        what = "empty timestamp" if pd.isna(value) else f"cannot parse {shown}"
        raise DataError(
            f"{path}: column '{name}': {what} (data row {i + 1}; {bad.size} unparsable)"
            f"{_parse_hint(col, bad)}"
        )
    _check_offsets(col, path, name)
    index = pd.DatetimeIndex(parsed).tz_localize(None)
    far = np.flatnonzero((index < _NS_MIN) | (index > _NS_MAX))
    if far.size:  # beyond what a nanosecond timestamp holds (years 1677 to 2262)
        i = int(far[0])
        unit = (
            f" (read as Unix times in {_epoch_unit(col)})" if ptypes.is_numeric_dtype(col) else ""
        )
        raise DataError(
            f"{path}: column '{name}': timestamp {index[i]} out of range{unit}, data row {i + 1} "
            f"({far.size} such); timestamps must lie between 1677 and 2262"
        )
    return index.as_unit("ns"), order


def _parse_hint(col: pd.Series, bad: np.ndarray) -> str:
    """Why timestamps may not parse: a summary row last, or time zone names."""
    if bad.size == 1 and bad[0] == len(col) - 1 and len(col) > 2:
        return "; it is the last row: a summary (total) row? delete it"
    value = str(col.iloc[int(bad[0])]).strip()
    if _ZONE_NAME.search(value) and not _OFFSET.search(value):
        return "; time zone names are not read: export UTC or UTC offsets (+01:00)"
    return ""


def _date_order(col: pd.Series, path: Path, name: str) -> str | None:
    """For dates written NN/NN/YYYY (or with '.' or '-'): "day-first" when the first number is
    the day (some exceed 12), "month-first" when the second is; refused when no value tells them
    apart. None for other timestamps."""
    text = col.dropna().astype(str)
    parts = text.str.extract(_SLASH_DATE)
    if text.empty or parts[0].isna().any():  # not (all) such dates: pandas' own rules
        return None
    first, second = parts[0].astype(int).max(), parts[1].astype(int).max()
    if first > 12 >= second:
        return "day-first"
    if second > 12 >= first:
        return "month-first"
    raise DataError(
        f"{path}: column '{name}': dates such as {text.iloc[0]!r} could be day/month or "
        f"month/day and no value tells them apart; write ISO 8601 dates (YYYY-MM-DD)"
    )


def _epoch_times(col: pd.Series, path: Path, name: str) -> pd.Series:
    """Unix times in seconds, milliseconds, microseconds or nanoseconds (``_epoch_unit``)."""
    _refuse_serial_days(col, path, name)
    try:
        return pd.to_datetime(col, unit=_epoch_unit(col), utc=True, errors="coerce")
    except (OverflowError, ValueError) as exc:  # pandas' OutOfBoundsDatetime is a ValueError
        raise DataError(
            f"{path}: column '{name}': Unix times in {_epoch_unit(col)} out of range ({exc}); "
            f"expected seconds, milliseconds, microseconds or nanoseconds since 1970"
        ) from None


def _refuse_serial_days(col: pd.Series, path: Path, name: str) -> None:
    """Refuse numbers that are all Excel serial dates of 1954 to 2119 (days since 1899-12-30):
    read as Unix seconds they would all fall on 1 January 1970, a grid of seconds."""
    values = col.to_numpy(dtype="float64", na_value=np.nan)
    low, high = np.nanmin(values, initial=np.inf), np.nanmax(values, initial=-np.inf)
    if not (_SERIAL_DAYS[0] <= low and high <= _SERIAL_DAYS[1]):
        return
    first = pd.Timestamp("1899-12-30") + pd.Timedelta(days=float(low))
    raise DataError(
        f"{path}: column '{name}': numbers {low:g} to {high:g} read as Unix seconds would all "
        f"fall on 1970-01-01; spreadsheet serial dates (days since 1899-12-30: {low:g} is "
        f"{first:%Y-%m-%d %H:%M})? write the column as dates (YYYY-MM-DD hh:mm), or as Unix time"
    )


def _epoch_unit(col: pd.Series) -> str:
    """The unit of numeric Unix times, told apart by their median size (seconds up to 1e11,
    about the year 5138; each next unit 1000 times larger)."""
    size = float(np.nanmedian(np.abs(col.to_numpy(dtype="float64", na_value=np.nan))))
    return next((u for u, top in _EPOCH_UNITS if not size >= top), "ns")  # NaN: all empty


def _snap_jitter(times: pd.DatetimeIndex) -> tuple[pd.DatetimeIndex, list[str]]:
    """Timestamps a logger wrote a little off its period (07:00:01, 08:00:03, 08:59:58) put on
    a grid, with a note: the median step rounded to the coarsest of ``_ROUNDINGS`` that leaves
    no timestamp more than ``_MAX_JITTER`` of the period off; else as they are (``_grid``
    refuses).
    """
    stamps = times.asi8
    unique = np.unique(stamps)
    if len(unique) < 3:
        return times, []
    diffs = np.diff(unique)
    steps, counts = np.unique(diffs, return_counts=True)
    if not ((unique - unique[0]) % steps[np.argmax(counts)]).any():  # on a grid already
        return times, []
    median = float(np.median(diffs))
    for unit in (u for u in reversed(_ROUNDINGS) if u <= median):  # the roundest period first
        period, anchor = round(median / unit) * unit, round(unique[0] / unit) * unit
        slots = np.round((stamps - anchor) / period).astype(np.int64)
        off = np.abs(stamps - anchor - slots * period)
        if off.max() <= _MAX_JITTER * period:
            snapped = pd.DatetimeIndex(anchor + slots * period, name=times.name).as_unit("ns")
            return snapped, [
                f"time: timestamps snapped to a {period / 1e9:g}-second grid (off by up to "
                f"{off.max() / 1e9:g} s)"
            ]
    return times, []


def _check_offsets(col: pd.Series, path: Path, name: str) -> None:
    """Refuse text timestamps that mix UTC offsets and naive (offset-less) values."""
    if ptypes.is_numeric_dtype(col) or ptypes.is_datetime64_any_dtype(col):
        return
    aware = col.astype(str).str.strip().str.contains(_OFFSET).to_numpy()
    if aware.any() and not aware.all():
        i, j = int(np.flatnonzero(aware)[0]), int(np.flatnonzero(~aware)[0])
        raise DataError(
            f"{path}: column '{name}': mixes timestamps with a UTC offset ({col.iloc[i]!r}, data "
            f"row {i + 1}) and without ({col.iloc[j]!r}, data row {j + 1}); use one convention"
        )


def _resolve_layout(
    body: pd.DataFrame, times: pd.DatetimeIndex, layout: str, id_col: str | None, path: Path
) -> tuple[str, str | None]:
    if layout not in LAYOUTS:
        raise DataError(f"{path}: layout '{layout}' unknown; expected one of {list(LAYOUTS)}")
    if id_col is not None:
        if id_col not in body.columns:
            raise DataError(
                f"{path}: id column '{id_col}' not found; columns: {_few(body.columns)}"
            )
        if layout == "wide":
            raise DataError(f"{path}: id column '{id_col}' given with layout='wide'")
        return "long", id_col
    named = [c for c in body.columns if c.lower() in ID_NAMES or c.lower().endswith("_id")]
    if layout == "long" and not named:
        raise DataError(f"{path}: layout='long' but no id column found; pass id_col")
    if named and (layout == "long" or (layout == "auto" and times.has_duplicates)):
        return "long", named[0]
    return "wide", None


def _value_columns(
    body: pd.DataFrame, times: pd.DatetimeIndex, exclude: set[str], requested: Any, path: Path
) -> tuple[list[str], list[str]]:
    if requested is not None:
        given, requested = list(requested), _split_names(requested, body.columns)
        unknown = [c for c in requested if c not in body.columns or c in exclude]
        if unknown:  # named as given: 'pressure, hPa', not its part 'hPa'
            named = [g for g in given if set(_split_names([g], body.columns)) & set(unknown)]
            raise DataError(
                f"{path}: value column(s) {named} not found; columns: {_few(body.columns)}"
            )
        return list(requested), []
    skipped: dict[str, list[str]] = {
        "calendar": [],
        "text": [],
        "constant integer (label)": [],
        "row index": [],
    }
    chosen = []
    for col in body.columns:
        if col in exclude:
            continue
        kind = _column_kind(body[col], col, path, times)
        if kind == "value":
            chosen.append(col)
        else:
            skipped[kind].append(col)
    if not chosen:
        raise DataError(
            f"{path}: no numeric value columns; columns besides time: {_few(body.columns)}"
        )
    notes = [f"skipped {kind} columns: {', '.join(cols)}" for kind, cols in skipped.items() if cols]
    return chosen, notes


def rejoin_names(names: Any, known: Any) -> list[str]:
    """``names`` with the parts of a known name that has commas joined back: a comma-separated
    flag (``--targets "Temp, C"``) splits the column ``Temp, C`` into ``Temp`` and ``C``. A name
    that is known as it is stays as it is."""
    known, names, out, i = set(known), list(names), [], 0
    while i < len(names):
        found = None
        if names[i] not in known:
            spans = ((j, sep) for j in range(len(names), i + 1, -1) for sep in (", ", ","))
            found = next(((j, sep) for j, sep in spans if sep.join(names[i:j]) in known), None)
        if found is None:
            out.append(names[i])
            i += 1
        else:
            out.append(found[1].join(names[i : found[0]]))
            i = found[0]
    return out


def _split_names(requested: Any, columns: pd.Index) -> list[str]:
    """Value column names as given, a comma-separated one (``--value-col a,b``) split in parts
    unless a column has that very name."""
    out = []
    for name in requested:
        parts = [p.strip() for p in str(name).split(",") if p.strip()]
        out += [name] if name in columns or len(parts) < 2 else parts
    return out


def _column_kind(col: pd.Series, name: str, path: Path, times: pd.DatetimeIndex) -> str:
    if name.lower() in CALENDAR_NAMES:
        return "calendar"
    if _is_row_index(col, name):
        return "row index"
    if not ptypes.is_numeric_dtype(col):
        cleaned = _drop_markers(col)
        parsed = pd.to_numeric(cleaned, errors="coerce")
        commas = cleaned.astype(str).str.strip().str.match(_DECIMAL_COMMA) & cleaned.notna()
        if parsed.notna().any() or commas.any() or col.isna().all():
            _to_float(col, name, path, times)  # numbers mixed with text: raises, naming one
            return "value"
        return "text"
    if ptypes.is_integer_dtype(col) and col.nunique(dropna=False) == 1:
        return "constant integer (label)"
    return "value"


def _is_row_index(col: pd.Series, name: str) -> bool:
    """A saved row index, not a sensor: a column with a blank header (pandas names it
    'Unnamed: N') holding distinct integers, or one named 'index' counting 0 or 1, 2, 3, ..."""
    if not ptypes.is_integer_dtype(col) or len(col) < 2:
        return False
    if _BLANK_HEADER.match(name):
        return bool(col.is_unique)
    values = col.to_numpy()
    return name.lower() == "index" and values[0] in (0, 1) and bool((np.diff(values) == 1).all())


def _drop_markers(col: pd.Series) -> pd.Series:
    """``col`` with the missing-value markers (``MISSING_MARKERS``) set to NaN and flags
    (bools, ``true``/``false`` text) set to 1/0, as ``edgecomp_runtime.tabular`` reads cells."""
    return col.map(_flag_or_marker)


def _flag_or_marker(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in MISSING_MARKERS:
            return np.nan
        return BOOL_TEXT.get(text, value)
    return value


def _to_float(
    col: pd.Series, name: str, path: Path, times: pd.DatetimeIndex | None = None
) -> np.ndarray:
    if ptypes.is_numeric_dtype(col):
        out = col.to_numpy(dtype="float64", na_value=np.nan)
    else:
        cleaned = _drop_markers(col)
        parsed = pd.to_numeric(cleaned, errors="coerce")
        bad = np.flatnonzero((parsed.isna() & cleaned.notna()).to_numpy())
        if bad.size:
            value = col.iloc[int(bad[0])]
            hint = ""
            if _DECIMAL_COMMA.match(str(value).strip()):
                hint = "; decimal comma or thousands separator? write numbers with '.' only"
            raise DataError(
                f"{path}: column '{name}' has non-numeric value {value!r} at "
                f"{_where(times, int(bad[0]))} ({bad.size} such values){hint}"
            )
        out = parsed.to_numpy(dtype="float64", na_value=np.nan)
    inf = np.flatnonzero(np.isinf(out))
    if inf.size:
        raise DataError(
            f"{path}: column '{name}' has an infinite value at {_where(times, int(inf[0]))} "
            f"({inf.size} such values)"
        )
    huge = np.flatnonzero(np.abs(out) > _FLOAT32_MAX)  # NaN compares False
    if huge.size:
        i = int(huge[0])
        raise DataError(
            f"{path}: column '{name}' has the value {out[i]:.4g} at {_where(times, i)} "
            f"({huge.size} such values), beyond the float32 range (±{_FLOAT32_MAX:.3g}) that "
            f"models and the runtime compute in; an error sentinel? set it to missing, or rescale "
            f"the column"
        )
    return out


def _where(times: pd.DatetimeIndex | None, i: int) -> str:
    """'<timestamp> (data row n)' for row ``i`` (0-based) of the file."""
    stamp = f"{times[i].isoformat()} " if times is not None else ""
    return f"{stamp}(data row {i + 1})"


def _ids(body: pd.DataFrame, icol: str, path: Path) -> pd.Series:
    ids = body[icol]
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0]) + 1
        raise DataError(f"{path}: column '{icol}': empty id (data row {row})")
    return ids


def _dedupe(
    data: pd.DataFrame, policy: str, path: Path, keys: list[str], hint: str = ""
) -> tuple[pd.DataFrame, list[str]]:
    """Resolve rows with the same key (timestamp, or timestamp and id) per ``policy``."""
    dup = np.flatnonzero(data.index.duplicated())
    if not dup.size:
        return data, []
    if policy == "error":
        raise DataError(_duplicate_message(data, dup, path, keys, hint))
    if policy == "mean":
        out = data.groupby(level=list(range(data.index.nlevels)), sort=False).mean()
    else:
        out = data[~data.index.duplicated(keep=policy)]
    what = " and ".join(f"'{k}'" for k in keys)
    return out, [f"on_duplicate={policy}: {dup.size} rows with a repeated {what} resolved"]


def _id_hint(body: pd.DataFrame, times: pd.DatetimeIndex, values: list[str]) -> str:
    """For a table whose timestamps repeat: a hint naming a column that is not a value column
    and tells the repeated rows apart (a long table's series id under a name not in
    ``ID_NAMES``, such as 'ticker'), else ''."""
    if not times.has_duplicates:
        return ""
    for col in body.columns:
        if col in values or body[col].isna().any() or body[col].nunique() < 2:
            continue
        if _looks_like_times(body[col]):  # dates beside a clock column: not a series id
            continue
        if not pd.MultiIndex.from_arrays([times, body[col]]).has_duplicates:
            return f"; a long (tidy) table with one row per series and time? pass --id-col {col}"
    return ""


def _duplicate_message(
    data: pd.DataFrame, dup: np.ndarray, path: Path, keys: list[str], id_hint: str = ""
) -> str:
    key = data.index[dup[0]]
    first = int(np.flatnonzero(data.index == key)[0]) if len(keys) == 1 else None
    if len(keys) == 1:
        same = data.iloc[first].equals(data.iloc[int(dup[0])])
        where = (
            f"column '{keys[0]}': duplicated timestamp {key.isoformat()} (data rows {first + 1} "
            f"and {dup[0] + 1}, {'identical' if same else 'different values'}"
        )
    else:
        where = (
            f"columns '{keys[0]}', '{keys[1]}': duplicated ({keys[0]}, {keys[1]}) pair "
            f"({key[0].isoformat()}, {key[1]!r}) (data row {dup[0] + 1}"
        )
    times = data.index.get_level_values(0)
    clock = bool((times.asi8 % _DAY_NS).any())
    hint = f"; {_LOCAL_HINT}" if clock else ""
    if not clock and 2 * dup.size > len(data):  # most rows repeat a date: finer data?
        hint = "; the timestamps are dates only and most repeat: is the clock time elsewhere?"
    hint = id_hint or hint
    return (
        f"{path}: {where}; {dup.size} duplicates); pass --on-duplicate first|last|mean to "
        f"resolve them{hint}"
    )


def _exclude(
    frame: pd.DataFrame, exclude: Any, dropped: list[str], columns: list[str], path: Path
) -> list[str]:
    """Check every ``exclude`` name is a file column or a feature; a note listing them."""
    if not exclude:
        return []
    unknown = [c for c in exclude if c not in dropped and c not in frame.columns]
    if unknown:
        raise DataError(
            f"{path}: --exclude: column(s) {unknown} not found; file columns: {_few(columns)}; "
            f"features: {_few(frame.columns)}"
        )
    return [f"excluded: {', '.join(exclude)}"]


def _pivot(data: pd.DataFrame, icol: str, vcols: list[str], path: Path) -> pd.DataFrame:
    wide = data.unstack(level=icol)  # columns: (value column, id)
    ids = data.index.get_level_values(icol)
    order = [(v, i) for i in pd.Index(ids.unique()).sort_values() for v in vcols]
    wide = wide[order]
    names = [f"{i}" if len(vcols) == 1 else f"{i}_{v}" for v, i in order]
    if len(set(names)) != len(names):
        raise DataError(f"{path}: column '{icol}': ids and value columns give duplicate names")
    wide.columns = names
    return wide


def _check_not_empty(frame: pd.DataFrame, path: Path) -> None:
    empty = [c for c in frame.columns if frame[c].isna().all()]
    if empty:
        raise DataError(
            f"{path}: {len(empty)} column(s) empty (no values): {_few([repr(c) for c in empty])}; "
            f"leave them "
            f"out with --exclude COL,... or --drop-sparse FRACTION"
        )


def _regularize(
    frame: pd.DataFrame, path: Path, tcol: str, regularize: bool
) -> tuple[pd.DataFrame, dict[str, Any]]:
    index = frame.index
    step = _mode_step(index, path, tcol)
    grid, notes = _grid(index, step, path, tcol)
    missing = ~grid.isin(index)
    info = {
        "period_s": step / 1e9,
        "seasonal_period": _DAY_NS // step if step < _DAY_NS and _DAY_NS % step == 0 else None,
        "n_gap_steps": int(missing.sum()),
        "gaps": _gap_spans(grid, missing),
        "notes": notes,
    }
    if not regularize:
        if info["n_gap_steps"]:
            notes.append(f"regularize=False: {info['n_gap_steps']} missing steps not inserted")
        return frame, info
    return frame.reindex(grid), info


def _mode_step(index: pd.DatetimeIndex, path: Path, tcol: str) -> int:
    if len(index) < 2:
        raise DataError(f"{path}: column '{tcol}': {len(index)} timestamp(s); need at least 2")
    diffs = np.diff(index.asi8)
    values, counts = np.unique(diffs, return_counts=True)
    return int(values[np.argmax(counts)])


def _grid(
    index: pd.DatetimeIndex, step: int, path: Path, tcol: str
) -> tuple[pd.DatetimeIndex, list[str]]:
    off = np.flatnonzero((index.asi8 - index.asi8[0]) % step)
    if off.size:
        raise DataError(
            f"{path}: column '{tcol}': timestamp {index[off[0]]} is off the regular "
            f"{_step_text(step)} grid ({off.size} such); resample the data first"
        )
    weekend = index.day_of_week >= 5
    span_days = (index[-1] - index[0]) / pd.Timedelta(days=1)
    if step == _DAY_NS and not weekend.any() and span_days >= 7:
        grid = pd.bdate_range(index[0], index[-1], normalize=False).as_unit("ns")
        notes = ["business-day series: weekends not treated as gaps"]
    else:
        n = (index.asi8[-1] - index.asi8[0]) // step + 1
        if n > MAX_GRID_GROWTH * len(index) + 1000:
            raise DataError(
                f"{path}: column '{tcol}': a regular {_step_text(step)} grid would need {n} rows "
                f"for {len(index)} timestamps; resample the data first"
            )
        grid = pd.date_range(index[0], periods=n, freq=pd.Timedelta(step)).as_unit("ns")
        notes = []
    return grid.rename(index.name), notes


def _refuse_calendar_months(index: pd.DatetimeIndex, path: Path, tcol: str) -> None:
    """Refuse monthly, quarterly or yearly data (month starts or month ends, at midnight) by
    name: calendar months are 28 to 31 days, not the fixed period every step here assumes."""
    midnight = not (index.asi8 % _DAY_NS).any()
    ends = bool(index.is_month_end.all())
    if len(index) < 2 or not (midnight and (ends or index.is_month_start.all())):
        return
    months = np.diff(np.sort(index.year * 12 + index.month))
    steps, counts = np.unique(months[months > 0], return_counts=True)
    if not steps.size:
        return
    k = int(steps[np.argmax(counts)])
    name = {1: "monthly", 3: "quarterly", 6: "half-yearly", 12: "yearly"}.get(k, f"{k}-monthly")
    season = f" --season {12 // k}" if k < 12 and 12 % k == 0 else ""  # steps in a year
    raise DataError(
        f"{path}: column '{tcol}': {name} data (timestamps on month {'ends' if ends else 'starts'}"
        f", e.g. {index[0].date()}, {index[1].date()}) is not supported: a calendar month is 28 "
        f"to 31 days and edgecomp needs a fixed sampling period; use the daily or weekly series "
        f"it was aggregated from, or number the rows (a time column 0, 1, 2, ... reads as one "
        f"step a second) and train with --calendar off{season}"
    )


def _gap_spans(grid: pd.DatetimeIndex, missing: np.ndarray) -> list[tuple[str, str, int]]:
    pos = np.flatnonzero(missing)
    if not pos.size:
        return []
    breaks = np.flatnonzero(np.diff(pos) != 1)
    starts = np.concatenate([[0], breaks + 1])[:MAX_GAPS_LISTED]
    ends = np.concatenate([breaks, [pos.size - 1]])[:MAX_GAPS_LISTED]
    return [
        (grid[pos[a]].isoformat(), grid[pos[b]].isoformat(), int(b - a + 1))
        for a, b in zip(starts, ends, strict=True)
    ]


def _step_text(step_ns: int) -> str:
    return f"{step_ns / 1e9:g}-second"


def _few(names: Any, limit: int = 12) -> str:
    names = [str(n) for n in names]
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return "[" + ", ".join(names[:limit]) + more + "]"
