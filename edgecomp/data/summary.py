"""Console summaries: what ``edgecomp data`` prints, suggested window sizes, horizon columns.

``format_summary`` turns ``Dataset.summary()`` into a readable page; ``suggest_windows`` proposes
an input length and a horizon for the sampling period; ``display_steps`` picks the horizon steps
a console table shows when the horizon is long (the JSON keeps every step).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from edgecomp.data.windows import suggest_windows  # noqa: F401 (re-exported)

MAX_FULL_STEPS = 8  # tables show every step up to this horizon, selected steps beyond


def default_calendar(period_s: float) -> tuple[str, ...]:
    """Calendar features worth trying at this sampling period: hour of day and day of week
    below a day, day of week and day of year for daily data, day of year up to a month."""
    if period_s < 86_400:
        return ("hour", "dow")
    if period_s < 7 * 86_400:
        return ("dow", "doy")
    return ("doy",) if period_s <= 31 * 86_400 else ()


def display_steps(horizon: int) -> list[int]:
    """1-based steps a console table shows: all up to ``MAX_FULL_STEPS``, else 1, 2, 4, ..., H."""
    if horizon <= MAX_FULL_STEPS:
        return list(range(1, horizon + 1))
    steps, step = [], 1
    while step < horizon:
        steps.append(step)
        step *= 2
    return [*steps, horizon]


def prepare_summary(path: Any, config: Any, *, default_window: bool) -> tuple[Any, str | None]:
    """``prepare(path, config)`` for ``edgecomp data``, and a note: with the default window
    (``default_window``) on a file too short for it, the windows are counted with one that fits
    every split (the note says which) instead of refusing the file.

    Raises:
        DataError: As ``prepare``; too short a file when the window was given, or when none fits.
    """
    from edgecomp.data.prep import WindowTooLongError, prepare

    try:
        return prepare(path, config), None
    except WindowTooLongError as exc:
        if not default_window or exc.fitting is None:
            raise
        length, horizon = exc.fitting
        fitted = dataclasses.replace(config, input_len=length, horizon=horizon)
        return prepare(path, fitted), (
            f"-L {config.input_len} -H {config.horizon} (the defaults) do not fit this file: "
            f"windows counted with -L {length} -H {horizon}"
        )


def format_summary(summary: dict[str, Any]) -> str:
    """A readable multi-line page from ``Dataset.summary()`` (plus ``suggested``, when present)."""
    rows, period = summary["rows"], summary["period_s"]
    lines = [
        f"file       {summary['file']} ({summary['layout']} layout)",
        f"grid       {rows} steps of {_period(period)}, {summary['n_gap_steps']} missing steps "
        f"inserted",
        f"series     {summary['features']} features, {summary['targets']} targets",
        f"missing    {summary['missing']} values ({_share(summary['missing'], rows, summary)}); "
        f"imputed per split: " + _pairs(summary["imputed"]),
        "windows    " + _windows(summary),
        "sparsest   "
        + (", ".join(f"{c} {f:.0%}" for c, f in summary.get("sparsest", {}).items()) or "none"),
        "baselines  last value, training mean"
        + "".join(f", {name} ({steps} steps)" for name, steps in summary["seasons"].items()),
    ]
    if "suggested" in summary:
        s = summary["suggested"]
        lines.append(f"suggested  -L {s['input_len']} -H {s['horizon']} ({s['why']})")
    lines += [f"note       {n}" for n in summary["notes"]]
    return "\n".join(lines) + "\n"


def _period(seconds: float) -> str:
    for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''}"
    return f"{seconds:g} s"


def _share(missing: int, rows: int, summary: dict[str, Any]) -> str:
    total = rows * summary["features"]
    return f"{missing / total:.1%} of {total}" if total else "no values"


def _pairs(counts: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _windows(summary: dict[str, Any]) -> str:
    parts = []
    for split, n in summary["windows"].items():
        left = summary.get("left_out", {}).get(split, {}).get("windows", 0)
        refused = f" ({left} left out: the runtime would refuse them)" if left else ""
        parts.append(f"{split} {n}{refused}")
    return ", ".join(parts)
