"""Options shared by the `edgecomp` commands, one meaning each: ``--json``, ``--quiet``,
``--verbose``, and the old spellings of renamed options (accepted for one release).

Imports only click and the standard library at top level (see COMMAND_MODULES in edgecomp/cli.py).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import sys
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

JSON_HELP = "Print the result as one JSON document on stdout; logs and progress go to stderr."
QUIET_HELP = "No progress bars and no log lines: results and errors only."
VERBOSE_HELP = "Show third-party logs and warnings (TensorFlow/absl, oneDNN, deprecations)."


class OldSpelling(click.Option):
    """A hidden option: an old spelling of ``new`` (a flag), kept for one release."""

    def __init__(self, *args: Any, new: str, **kw: Any) -> None:
        super().__init__(*args, hidden=True, **kw)
        self.new = new


class RequiredOption(click.Option):
    """Shown as required; checked after old spellings are merged (see ``renamed``)."""

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        extra["required"] = "required"
        return extra


def deprecation(old: str, new: str) -> None:
    """Say on stderr, in one line, that ``old`` is the old spelling of ``new``."""
    click.echo(
        f"warning: {old} is deprecated here, use {new} (the old spelling goes in the next release)",
        err=True,
    )


def renamed(*old: str, to: str, dest: str | None = None, required: bool = False, **attrs: Any):
    """Accept ``old`` spellings of the option ``to`` (one-line note on stderr).

    Args:
        old: The old flags, e.g. ``("-o", "--out")``.
        to: The new flag, e.g. ``"--out-dir"``; its parameter is ``dest`` (default: from ``to``).
        required: The new option is required (declare it with ``cls=RequiredOption``): the
            check runs once the old spelling's value is merged.
        attrs: click option attributes of the old spelling (``type``, ``multiple``...).
    """
    dest = dest or to.lstrip("-").replace("-", "_")
    hidden = "_old_" + dest

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any) -> Any:
            value, ctx = kw.pop(hidden), click.get_current_context()
            if value is not None and value != ():
                if ctx.get_parameter_source(dest) is ParameterSource.COMMANDLINE:
                    raise click.UsageError(f"{'/'.join(old)} is the old spelling of {to}: give one")
                deprecation("/".join(old), to)
                kw[dest] = ctx.params[dest] = value  # ctx.params: what tracking logs
            if required and kw.get(dest) in (None, ()):
                param = next(p for p in ctx.command.params if p.name == dest)
                raise click.MissingParameter(ctx=ctx, param=param)
            return fn(*args, **kw)

        return click.option(*old, hidden, cls=OldSpelling, new=to, **attrs)(wrapper)

    return decorate


def verbosity_options(fn: Callable) -> Callable:
    """``-q/--quiet`` and ``-v/--verbose`` (on the group and on each command)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        quiet, verbose = kw.pop("quiet"), kw.pop("verbose")
        if quiet or verbose:
            from edgecomp import progress

            progress.configure(quiet=quiet or None, verbose=verbose or None)
        return fn(*args, **kw)

    wrapper = click.option("--verbose", "-v", is_flag=True, help=VERBOSE_HELP)(wrapper)
    return click.option("--quiet", "-q", is_flag=True, help=QUIET_HELP)(wrapper)


class ExitWith(Exception):  # noqa: N818 - raised to end a command with a document
    """End a ``json_output`` command with exit ``code``, its ``document`` still printed."""

    def __init__(self, document: Any, code: int) -> None:
        super().__init__(code)
        self.document, self.code = document, code


def json_output(fn: Callable) -> Callable:
    """``--json``: the document the command returns goes to stdout as JSON, and nothing else
    does (what the command prints meanwhile goes to stderr); also ``--quiet``/``--verbose``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        as_json = kw.pop("as_json")
        if not as_json:
            try:
                return fn(*args, **kw)
            except ExitWith as done:
                sys.exit(done.code)
        from edgecomp import progress

        stdout, code = sys.stdout, None
        with progress.json_mode(), contextlib.redirect_stdout(sys.stderr):
            try:
                document = fn(*args, **kw)
            except ExitWith as done:
                document, code = done.document, done.code
        stdout.write(json.dumps(clean(document), indent=2, allow_nan=False) + "\n")
        stdout.flush()
        if code is not None:
            sys.exit(code)
        return document

    wrapper = click.option("--json", "as_json", is_flag=True, help=JSON_HELP)(wrapper)
    return verbosity_options(wrapper)


def clean(node: Any) -> Any:
    """``node`` as strict JSON values: NaN and infinities become null, paths and tuples text
    and lists."""
    if isinstance(node, float):
        return node if math.isfinite(node) else None
    if isinstance(node, dict):
        return {str(k): clean(v) for k, v in node.items()}
    if isinstance(node, list | tuple | set | frozenset):
        return [clean(v) for v in node]
    if node is None or isinstance(node, bool | int | str):
        return node
    if hasattr(node, "item"):  # numpy scalars
        return clean(node.item())
    if hasattr(node, "tolist"):
        return clean(node.tolist())
    return str(node)
