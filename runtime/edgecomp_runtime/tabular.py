"""Tables on the gateway: CSV windows, DataFrames and flag columns read as the compiler reads them.

The compiler (``edgecomp.data``) imports ``BOOL_TEXT``, ``MISSING_TEXT`` and ``cell_value`` from
here, so a cell means the same on both sides: ``True``/``False`` (bool, or the text in any case,
spaces ignored) is 1/0, the missing markers are NaN, anything else must be a number.

``read_csv`` reads the CSV layouts ``edgecomp data`` reads, wide: a header row, a time column
(``time_col``, else the first named one of ``TIME_NAMES``; optional) and the artifact's feature
columns picked by name (other columns ignored); or headerless rows of numbers, one column per
feature. numpy and the standard library only.
"""

from __future__ import annotations

import csv
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgecomp_runtime.calendar import from_iso
from edgecomp_runtime.errors import InputError

BOOL_TEXT = {"true": 1.0, "false": 0.0}
# NOTE: with the text pandas' read_csv reads as missing (#N/A from spreadsheets, <NA>, 1.#IND)
MISSING_TEXT = frozenset(
    {"", "na", "n/a", "nan", "null", "none", "-", "#n/a", "#n/a n/a", "#na", "<na>"}
    | {"1.#ind", "-1.#ind", "1.#qnan", "-1.#qnan"}
)
TIME_NAMES = ("time", "timestamp", "date", "datetime", "time_hour")
_DECIMAL_COMMA = re.compile(r"^\s*([+-]?\d+),(\d+)\s*$")
_CLOCK = re.compile(r"^\s*\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*$")  # 7:05, 07:05:00.250
# NN/NN/YYYY dates (or with '.' or '-'), an optional clock time and AM/PM: 05/01/2024 7:05 PM
_NUMERIC_DATE = re.compile(
    r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})"
    r"(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6})\d*)?)?(?:\s*([AaPp])\.?[Mm]\.?)?)?$"
)
_OFFSET = re.compile(r"(?:[Zz]|[+-]\d\d:?\d\d)$")  # as the compiler tells naive from aware
_YEAR_FIRST = re.compile(r"^(\d{4})[/.](\d{1,2})[/.](\d{1,2})(?=$|[ T])")  # 2024/01/05 07:00
DATE_ORDERS = ("day-first", "month-first")  # how spec.data.date_order names NN/NN/YYYY dates


def cell_value(value: Any) -> float:
    """One cell as a float: bool -> 1/0, missing markers -> NaN, numbers as they are.

    Raises:
        ValueError: Text that is neither a number, ``true``/``false`` nor a missing marker.
    """
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in MISSING_TEXT:
            return math.nan
        if text in BOOL_TEXT:
            return BOOL_TEXT[text]
        if "_" in text or not text.isascii():  # float() reads 1_000 and ١٢; pandas does not
            raise ValueError(f"could not convert string to float: {value!r}")
        return float(text)
    return float(value)


def as_numeric(window: Any, features: list[str]) -> Any:
    """``predict``'s input with flags read as 1/0: a DataFrame's feature columns (by name) or a
    bool / object array as float64; anything else unchanged (checked by ``predict``).

    Raises:
        InputError: A DataFrame lacks feature columns, or a cell is not a number or a flag.
    """
    if hasattr(window, "columns") and hasattr(window, "to_numpy"):
        names = [str(c).strip() for c in window.columns]  # as a CSV header is read
        absent = [f for f in features if f not in names]
        if absent:
            raise InputError(f"window: DataFrame lacks feature column(s) {absent}; has {names}")
        cells = window.to_numpy(dtype=object, na_value=np.nan)  # pandas' NA (Int64...) is NaN
        window = cells[:, [names.index(f) for f in features]]
    array = window if isinstance(window, np.ndarray) else None
    if array is None or array.dtype.kind not in "bO":
        return window
    if array.dtype.kind == "b":
        return array.astype(np.float64)
    if not all(isinstance(v, (bool, np.bool_, str, int, float, np.number)) for v in array.flat):
        return window  # None, complex, ...: refused by predict, naming the dtype
    try:
        return np.vectorize(cell_value, otypes=[np.float64])(array)
    except ValueError as exc:
        raise InputError(f"window: {exc}") from None


def read_csv(
    path: str | Path,
    features: list[str],
    *,
    time_col: str | None = None,
    times: bool = False,
    date_order: str | None = None,
    hint: str = "",
) -> tuple[np.ndarray, list[datetime] | None]:
    """Read a raw window [L, F] from a CSV file, and (``times=True``) its naive UTC timestamps.

    Timestamps are ISO 8601 (``Z`` or offsets converted to UTC), Unix times, or dates written
    NN/NN/YYYY: day first when a first number exceeds 12, month first when a second one does,
    else as ``date_order`` says (``"day-first"`` / ``"month-first"``: the training file's order,
    ``spec.data.date_order``), refused when nothing tells; naive and offset timestamps mixed
    are refused. With no time column named one of ``TIME_NAMES``, columns named year, month and
    day (and hour, minute) give the times, as the compiler reads them. ``hint`` ends the error
    for a missing feature column.

    Raises:
        InputError: Empty file, missing feature or time column, an unreadable cell or timestamp;
            the message names the file, the column and the row.
    """
    path = Path(path)
    lines, sep = _lines(path)
    try:
        rows = [row for row in csv.reader(lines, delimiter=sep) if row]
    except csv.Error as exc:  # a field over csv's size limit, ...
        raise InputError(f"{path}: cannot read the CSV file ({exc})") from None
    if sep != ",":  # ';' or tab: "12,5" is a decimal comma, as the compiler reads it
        rows = [[_DECIMAL_COMMA.sub(r"\1.\2", cell) for cell in row] for row in rows]
    if not rows:
        raise InputError(f"{path}: the CSV file is empty")
    headerless = all(_parses(cell_value, cell) for cell in rows[0])
    if time_col is None and not times and headerless:
        positions = list(range(len(rows[0])))
        return _cells(path, rows, positions, [f"column {i + 1}" for i in positions]), None
    header = [name.strip() for name in rows[0]]
    twice = next((name for name in features if header.count(name) > 1), None)
    if twice is not None:
        raise InputError(f"{path}: the CSV header names the feature column '{twice}' twice")
    absent = [name for name in features if name not in header]
    if absent:
        raise InputError(
            f"{path}: CSV header lacks the artifact's feature column(s) {absent}; columns: "
            f"{header}{hint}"
        )
    values = _cells(path, rows[1:], [header.index(f) for f in features], features)
    if not times:
        return values, None
    parts = _date_parts(header) if time_col is None else None
    if parts is not None:
        return values, _part_stamps(path, header, rows[1:], parts)
    tcol = _time_column(path, header, time_col)
    at = _dated(header, rows[1:], header.index(tcol))
    tcol = header[at]
    clock = _clock_column(rows[1:], at)
    texts = [_stamp_text(row, at, clock).strip() for row in rows[1:]]
    return values, _timestamps(path, tcol, texts, date_order)


def _date_parts(header: list[str]) -> list[str] | None:
    """The year, month, day (hour, minute) columns a time is built from, as the compiler builds
    it when no column is named one of ``TIME_NAMES``; else None."""
    names = {h.lower(): h for h in header}
    parts = [p for p in ("year", "month", "day", "hour", "minute") if p in names]
    if any(n in TIME_NAMES for n in names) or parts[:3] != ["year", "month", "day"]:
        return None
    return [names[p] for p in parts]


def _part_stamps(
    path: Path, header: list[str], rows: list[list[str]], parts: list[str]
) -> list[datetime]:
    """Naive UTC datetimes from the ``parts`` columns of each row."""
    at = [header.index(p) for p in parts]
    stamps = []
    for r, row in enumerate(rows, 1):
        try:
            numbers = [int(float(row[i])) for i in at]
            stamps.append(datetime(*numbers))
        except (ValueError, IndexError, OverflowError):
            shown = (
                f"{p} {row[i]!r}" if i < len(row) else p for p, i in zip(parts, at, strict=True)
            )
            cells = ", ".join(shown)
            raise InputError(
                f"{path}: no time column, and columns {', '.join(parts)} give no date at row "
                f"{r} ({cells})"
            ) from None
    return stamps


def _dated(header: list[str], rows: list[list[str]], at: int) -> int:
    """The time column ``at``, or when it holds clock times only, another column named one of
    ``TIME_NAMES`` (the dates it is joined with, as the compiler joins them)."""
    if not rows or not all(at < len(row) and _CLOCK.match(row[at]) for row in rows):
        return at
    others = [i for i, h in enumerate(header) if i != at and h.lower() in TIME_NAMES]
    return others[0] if len(others) == 1 else at


def _clock_column(rows: list[list[str]], at: int) -> int | None:
    """A column of clock times beside a time column of dates only that repeat (a logger's
    ``Date;Time``), joined to it as the compiler does; else None."""
    dates = [row[at].strip() for row in rows if at < len(row)]
    if not dates or any(":" in d for d in dates) or len(set(dates)) == len(dates):
        return None
    width = min(len(row) for row in rows)
    return next(
        (i for i in range(width) if i != at and all(_CLOCK.match(row[i]) for row in rows)), None
    )


def _stamp_text(row: list[str], at: int, clock: int | None) -> str:
    text = row[at] if at < len(row) else ""
    return text if clock is None else f"{text.strip()} {row[clock].strip()}"


def csv_window(path: str | Path, spec: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """A CSV input as ``predict`` takes it: the window [L, F] and its keyword arguments.

    The file holds L rows (``spec.input_len``), else it is refused naming its row count; when
    its time column parses, its rows must be one sampling period (``spec.period_s``) apart.
    For a model with known-future inputs (``spec.future``) the keyword arguments hold ``times``
    (the time column, for calendar features) and, when the file has L + H rows, ``future``: the
    declared columns' values in the last H rows (the other cells of those rows may be empty).
    """
    future = spec.get("future") or {}
    features = spec["features"][: len(spec["features"]) - len(future.get("features", []))]
    data = spec.get("data") or {}
    hint = (
        f"; the model was trained on a long table (a row per '{data.get('id_col')}' and time): "
        f"give the window wide, a column per feature"
        if data.get("layout") == "long"
        else ""
    )
    values, stamps = read_csv(
        path,
        features,
        times=bool(future.get("calendar")),
        date_order=data.get("date_order"),
        hint=hint,
    )
    length, lead = spec["input_len"], int(future.get("lead", 0))
    _check_rows(path, len(values), length, lead if future.get("columns") else 0)
    given = stamps if stamps is not None else _optional_times(path, data.get("date_order"))
    if given is not None and spec.get("period_s"):
        _check_steps(path, given, float(spec["period_s"]), data.get("grid") == "business-day")
    if not future.get("columns") or len(values) != length + lead:
        return values, {} if stamps is None else {"times": stamps}
    ahead = {c: values[length:, features.index(c)] for c in future["columns"]}
    extra = {"future": ahead} | ({} if stamps is None else {"times": stamps[:length]})
    return values[:length], extra


def _optional_times(path: str | Path, date_order: str | None) -> list[datetime] | None:
    """The window file's timestamps when it has a time column that parses, else None (a model
    without calendar inputs does not need them)."""
    try:
        return read_csv(path, [], times=True, date_order=date_order)[1]
    except InputError:
        return None


def has_time_column(path: str | Path) -> bool:
    """True when a CSV file's header names a time column (one of ``TIME_NAMES``, any case) or
    year, month and day columns: the times ``read_csv(..., times=True)`` reads.

    Raises:
        OSError: The file cannot be read.
    """
    lines, sep = _lines(Path(path))
    header = [h.strip() for h in next(csv.reader(lines[:1], delimiter=sep), [])]
    return any(h.lower() in TIME_NAMES for h in header) or _date_parts(header) is not None


def _check_steps(path: str | Path, stamps: list[datetime], period_s: float, weekdays: bool) -> None:
    """Refuse a window whose rows are not one sampling period apart (a missing row would make
    the model read 24 rows as 24 consecutive steps): a step of 0.5 to 1.5 periods is one, as the
    stream places readings; on a business-day grid, Friday to Monday is one step too."""
    for i in range(1, len(stamps)):
        before, after = stamps[i - 1], stamps[i]
        step = (after - before).total_seconds() / period_s
        if weekdays and round(step) > 1:
            step = float(np.busday_count(before.date(), after.date()))
        if not 0.5 <= step < 1.5:
            raise InputError(
                f"{path}: rows {i} and {i + 1} ({before.isoformat()} and {after.isoformat()}) are "
                f"{step:g} sampling periods ({period_s:g} s) apart, not one; a missing reading? "
                "give it a row of empty cells (missing values)"
            )


def _check_rows(path: str | Path, rows: int, length: int, lead: int) -> None:
    """Refuse a window file of other than L rows (or L + H with known-future columns)."""
    if rows == length or (lead and rows == length + lead):
        return
    ahead = (
        f", or {length + lead} with the known-future columns' next {lead} values" if lead else ""
    )
    raise InputError(
        f"{path}: {rows} data rows; the model takes a window of its last {length} readings "
        f"(input_len), oldest first{ahead}"
    )


def _cells(path: Path, rows: list[list[str]], index: list[int], names: list[str]) -> np.ndarray:
    out = np.empty((len(rows), len(index)), dtype=np.float64)
    for r, row in enumerate(rows):
        for c, (i, name) in enumerate(zip(index, names, strict=True)):
            try:
                out[r, c] = cell_value(row[i])
            except (ValueError, IndexError):
                cell = row[i] if i < len(row) else "<missing cell>"
                raise InputError(
                    f"{path}: column '{name}', row {r + 1}: not a number or a flag: {cell!r}"
                ) from None
    return out


def _lines(path: Path) -> tuple[list[str], str]:
    """The file's lines from its header on (UTF-8, else Windows-1252; UTF-16 after its
    byte-order mark, as the compiler reads them) and delimiter: ',' unless the header has none
    and has ';', a tab or '|'."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    lines = text.splitlines()
    lines = lines[_preamble(lines) :]
    head = lines[0] if lines else ","
    return lines, "," if "," in head else next((c for c in ";\t|" if c in head), ",")


def _preamble(lines: list[str]) -> int:
    """Lines before the header, skipped as the compiler skips them: blank lines, '#' comments
    and title lines with no delimiter, when a later line has one."""
    for i, line in enumerate(lines):
        text = line.strip()
        if text and not text.startswith("#") and any(c in text for c in ",;\t|"):
            return i
    return 0


def _time_column(path: Path, header: list[str], time_col: str | None) -> str:
    if time_col is not None:
        if time_col not in header:
            raise InputError(f"{path}: time column '{time_col}' not found; columns: {header}")
        return time_col
    found = next((h for h in header if h.lower() in TIME_NAMES), None)
    if found is None:
        raise InputError(
            f"{path}: no time column (none named one of {list(TIME_NAMES)}); columns: {header}"
        )
    return found


def _timestamps(
    path: Path, column: str, texts: list[str], date_order: str | None
) -> list[datetime]:
    """The time column's cells as naive UTC datetimes (see ``read_csv``)."""
    dates = [_NUMERIC_DATE.match(text) for text in texts]
    if not any(dates):
        _check_offsets(path, column, texts)
        return [_timestamp(path, column, text, i) for i, text in enumerate(texts, 1)]
    if not all(dates):
        row = next(i for i, m in enumerate(dates, 1) if m is None)
        raise InputError(
            f"{path}: column '{column}', row {row}: {texts[row - 1]!r} is not a NN/NN/YYYY date "
            f"like the other rows ({texts[0]!r}); use one format, ISO 8601 best"
        )
    day_first = _day_first(path, column, dates, texts[0], date_order)
    return [_numeric_date(path, column, m, day_first, i) for i, m in enumerate(dates, 1)]


def _day_first(
    path: Path, column: str, dates: list[re.Match], first: str, date_order: str | None
) -> bool:
    """True when NN/NN/YYYY dates are day first: the rule ``read_csv`` gives, as the compiler's."""
    one, two = (max(int(m.group(k)) for m in dates) for k in (1, 2))
    if one > 12 >= two:
        return True
    if two > 12 >= one:
        return False
    if one <= 12 and date_order in DATE_ORDERS:
        return date_order == "day-first"
    why = "no row tells them apart" if one <= 12 else "both numbers exceed 12 in some rows"
    raise InputError(
        f"{path}: column '{column}': dates such as {first!r} could be day/month or month/day "
        f"and {why} (nor does the artifact); write ISO 8601 timestamps (YYYY-MM-DD HH:MM)"
    )


def _numeric_date(path: Path, column: str, m: re.Match, day_first: bool, row: int) -> datetime:
    one, two, year, hour, minute, second, fraction, half = m.groups()
    day, month = (one, two) if day_first else (two, one)
    hours = int(hour or 0)
    if half is not None:  # 12 AM is midnight, 12 PM noon
        hours = hours % 12 + (12 if half.lower() == "p" else 0) if 1 <= hours <= 12 else 99
    try:
        return datetime(
            int(year),
            int(month),
            int(day),
            hours,
            int(minute or 0),
            int(second or 0),
            int((fraction or "0").ljust(6, "0")),
        )
    except ValueError:
        raise InputError(
            f"{path}: column '{column}', row {row}: cannot parse {m.group(0)!r} as a "
            f"{'day/month' if day_first else 'month/day'}/year date"
        ) from None


def _check_offsets(path: Path, column: str, texts: list[str]) -> None:
    """Refuse timestamps that mix UTC offsets and naive ones, as the compiler does: a naive one
    is taken as UTC, so a local time among offsets would be off by the offset."""
    aware = [bool(_OFFSET.search(t)) for t in texts if not _parses(float, t)]
    if any(aware) and not all(aware):
        rows = [i for i, t in enumerate(texts, 1) if not _parses(float, t)]
        with_, without = rows[aware.index(True)], rows[aware.index(False)]
        raise InputError(
            f"{path}: column '{column}': mixes timestamps with a UTC offset (row {with_}: "
            f"{texts[with_ - 1]!r}) and without (row {without}: {texts[without - 1]!r}); "
            f"use one convention"
        )


def _timestamp(path: Path, column: str, text: str, row: int) -> datetime:
    """An ISO-8601 timestamp or Unix time, as a naive UTC datetime (as the compiler reads it)."""
    text = _YEAR_FIRST.sub(_iso_date, text.strip())
    try:
        if _parses(float, text):  # Unix s, ms, us or ns, told apart by size as the compiler does
            seconds = float(text)
            for _ in range(3):  # at most ns -> s (inf stays inf, refused below)
                seconds = seconds / 1000 if abs(seconds) >= 1e11 else seconds
            return datetime.fromtimestamp(seconds, tz=timezone.utc).replace(tzinfo=None)
        stamp = from_iso(text)
    except (ValueError, OverflowError, OSError):
        raise InputError(f"{path}: column '{column}', row {row}: cannot parse {text!r}") from None
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(timezone.utc).replace(tzinfo=None)
    return stamp


def _iso_date(m: re.Match) -> str:
    """2024/1/5 (a year-first date with '/' or '.') as ISO 8601's 2024-01-05."""
    return f"{m.group(1)}-{int(m.group(2)):02d}-{int(m.group(3)):02d}"


def _parses(parse: Any, text: str) -> bool:
    """True when ``parse(text)`` raises no ValueError."""
    try:
        parse(text)
    except ValueError:
        return False
    return True
