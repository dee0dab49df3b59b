"""The data-reading flags every command that reads a data file takes.

``--time-col``, ``--exclude COL,...``, ``--drop-sparse FRACTION`` and ``--on-duplicate`` say how a
file is read, not what a model is: commands that build a DataConfig themselves (``data``,
``train``, ``fl``) put them into it; commands that window a file the way a model's spec says
(``build``, ``bench``, ``report``, ``tune``, ``analyze``) run inside ``reading(...)``, and
``edgecomp.data.config_from_spec`` applies them over what the spec recorded.

Imports only click and the standard library at top level (see COMMAND_MODULES in edgecomp/cli.py).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

import click

READ_KEYS = ("time_col", "exclude", "drop_sparse", "on_duplicate")
ON_DUPLICATE = ("error", "first", "last", "mean")

_ACTIVE: ContextVar[dict[str, Any]] = ContextVar("edgecomp_read_overrides", default={})  # noqa: B039


def read_overrides() -> dict[str, Any]:
    """The reading options set by the innermost ``reading`` block (unset ones left out)."""
    return dict(_ACTIVE.get())


@contextlib.contextmanager
def reading(**options: Any) -> Iterator[None]:
    """Apply reading options (``READ_KEYS``; None: keep the spec's) to specs read in the block."""
    unknown = sorted(set(options) - set(READ_KEYS))
    if unknown:
        raise ValueError(f"reading: unknown option(s) {unknown}; known: {list(READ_KEYS)}")
    token = _ACTIVE.set({k: v for k, v in options.items() if v is not None})
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def parse_names(value: str | None) -> tuple[str, ...] | None:
    """'a, b' -> ('a', 'b'); empty or None -> None."""
    names = tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()
    return names or None


def _exclude_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    names = parse_names(value)
    if value is not None and not names:
        raise click.BadParameter(f"'{value}' names no column", ctx=ctx, param=param)
    return names


def flag_options(*, time_col: bool = True) -> list[Callable]:
    """The click options, for commands that add them to their own option lists."""
    opts = [
        click.option(
            "--exclude",
            callback=_exclude_callback,
            help="Comma-separated file columns or feature names to leave out.",
        ),
        click.option(
            "--drop-sparse",
            type=click.FloatRange(0, 1, max_open=True),
            help="Drop every column missing more than this fraction of its values in any split "
            "(columns named by --features/--targets are kept); a note lists them.",
        ),
        click.option(
            "--on-duplicate",
            type=click.Choice(ON_DUPLICATE),
            help="Rows with a repeated timestamp: refuse (error, the default) or keep the first, "
            "the last, or their mean.",
        ),
    ]
    if time_col:
        opts.insert(0, click.option("--time-col", help="Time column (default: detected)."))
    return opts


def read_flags(fn: Callable) -> Callable:
    """Add the reading flags to a command that windows data per a model's spec; the command
    body runs inside ``reading(...)`` with them."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        with reading(**{k: kw.pop(k) for k in READ_KEYS}):
            return fn(*args, **kw)

    for opt in reversed(flag_options()):
        wrapper = opt(wrapper)
    return wrapper
