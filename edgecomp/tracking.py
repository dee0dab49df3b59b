"""Experiment tracking: each `edgecomp` command run as an MLflow run, when asked for.

Tracking is on when ``edgecomp --mlflow URI ...`` is given or ``MLFLOW_TRACKING_URI`` is set (a
local ``sqlite:///mlflow.db``, a ``file:`` folder, or a tracking server). The command's options are
the run's parameters; library code adds metrics (per forecast step, as MLflow steps), and the
files a command writes (checkpoints, artifacts, reports) as the run's artifacts. Without a URI
every function here does nothing and mlflow is never imported.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click

__all__ = [
    "ENV",
    "TrackedCommand",
    "TrackedGroup",
    "active",
    "log_artifact",
    "log_metrics",
    "log_outputs",
    "log_per_step",
    "run",
]

ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT = "edgecomp"
#: Options that name what a command wrote; their files become the run's artifacts and metrics.
OUTPUT_PARAMS = ("out", "output", "out_dir", "output_dir")
_MAX_METRICS = 1000  # one batch
_RUN: list[Any] = []  # the active run, if any (one per process: commands do not nest)


def active() -> bool:
    """True while a tracked command runs."""
    return bool(_RUN)


@contextlib.contextmanager
def run(command: str, params: Mapping[str, Any], uri: str | None = None) -> Iterator[Any]:
    """Track ``command`` as an MLflow run when ``uri`` (or ``MLFLOW_TRACKING_URI``) is set.

    Args:
        command: The command path, e.g. "edgecomp build"; the run's name.
        params: The command's options, logged as parameters (JSON text, 500 characters at most).
        uri: Tracking URI; None reads ``MLFLOW_TRACKING_URI``; empty: tracking off.

    Raises:
        ValueError: Tracking was asked for but mlflow is not installed.
    """
    uri = os.environ.get(ENV) if uri is None else uri
    if not uri or _RUN:
        yield None
        return
    mlflow = _mlflow()
    mlflow.set_tracking_uri(uri)
    _experiment(mlflow, uri)
    with mlflow.start_run(run_name=command, tags=_tags(command)) as current:
        mlflow.log_params({k: _param(v) for k, v in params.items()})
        _RUN.append(current)
        try:
            yield current
        finally:
            _RUN.clear()


def log_metrics(metrics: Mapping[str, Any], *, step: int | None = None) -> None:
    """Log the finite numbers of ``metrics`` (others are skipped) to the active run, if any."""
    if not _RUN:
        return
    finite = {k: float(v) for k, v in metrics.items() if _finite(v)}
    if finite:
        _mlflow().log_metrics(finite, step=step)


def log_per_step(name: str, values: list[Any]) -> None:
    """Log a per-forecast-step series as metric ``name`` with MLflow steps 1..H."""
    for step, value in enumerate(values, start=1):
        log_metrics({name: value}, step=step)


def log_artifact(path: str | Path, *, folder: str | None = None) -> None:
    """Attach a file or a folder written by the command to the active run, if any."""
    if not _RUN:
        return
    path = Path(path)
    if path.is_dir():
        _mlflow().log_artifacts(str(path), artifact_path=folder or path.name)
    elif path.is_file():
        _mlflow().log_artifact(str(path), artifact_path=folder)


def _experiment(mlflow: Any, uri: str) -> None:
    """Select the "edgecomp" experiment; a new one keeps its artifacts beside a SQLite store
    (MLflow's default is ./mlruns in whatever folder the command ran from)."""
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        location = None
        if uri.startswith("sqlite:///"):
            store = Path(uri.removeprefix("sqlite:///")).resolve()
            location = (store.parent / "mlartifacts").as_uri()
        mlflow.create_experiment(EXPERIMENT, artifact_location=location)
    mlflow.set_experiment(EXPERIMENT)


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise ValueError(
            f"tracking was asked for (--mlflow or {ENV}) but mlflow is not installed: "
            "pip install 'edgecomp[track]'"
        ) from None
    return mlflow


def _tags(command: str) -> dict[str, str]:
    from importlib import metadata

    try:
        version = metadata.version("edgecomp")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"edgecomp.command": command, "edgecomp.version": version}


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:500]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def log_outputs(params: Mapping[str, Any]) -> None:
    """Attach what a command wrote (its output options) and the numbers in its JSON results.

    JSON results are the artifact's manifest.json, train.json, report.json, results.json and
    fl.json: every number becomes a metric named by its path (``metrics.artifact.mae``), and every
    list of numbers a per-step series (MLflow steps 1..H).
    """
    if not _RUN:
        return
    for name in OUTPUT_PARAMS:
        value = params.get(name)
        if value and Path(value).exists():
            rows: list[tuple[str, float, int]] = []
            for stem, document in _documents(Path(value)):
                _flatten(document, stem, rows, depth=0)
            _log_batch(rows[:_MAX_METRICS])
            log_artifact(value)


def _documents(path: Path) -> Iterator[tuple[str, Any]]:
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive, contextlib.suppress(KeyError, ValueError):
            yield "manifest", json.loads(archive.read("manifest.json"))
        return
    candidates = [path] if path.is_file() else sorted(path.glob("*.json"))
    for file in candidates:
        if file.suffix == ".json" and file.stat().st_size < 5_000_000:
            with contextlib.suppress(ValueError, OSError):
                yield file.stem, json.loads(file.read_text())


def _flatten(node: Any, prefix: str, rows: list, *, depth: int) -> None:
    if isinstance(node, dict) and depth < 5:
        for key, value in node.items():
            _flatten(value, f"{prefix}.{_name(str(key))}", rows, depth=depth + 1)
    elif isinstance(node, list) and node and all(_finite(v) or v is None for v in node):
        rows.extend((prefix, float(v), i) for i, v in enumerate(node, start=1) if v is not None)
    elif _finite(node):
        rows.append((prefix, float(node), 0))


def _name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", key)[:200]


def _log_batch(rows: list[tuple[str, float, int]]) -> None:
    if not rows:
        return
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    now = int(time.time() * 1000)
    metrics = [Metric(key, value, now, step) for key, value, step in rows]
    MlflowClient().log_batch(_RUN[0].info.run_id, metrics=metrics)


class TrackedCommand(click.Command):
    """A click command that runs as an MLflow run when tracking is on (``--mlflow``/env)."""

    def invoke(self, ctx: click.Context) -> Any:
        uri = (ctx.find_root().obj or {}).get("mlflow")
        name = " ".join(["edgecomp", *ctx.command_path.split()[1:]])  # whatever argv[0] was
        with run(name, ctx.params, uri):
            result = super().invoke(ctx)
            log_outputs(ctx.params)
            return result


class TrackedGroup(click.Group):
    """A click group whose commands (and sub-groups) are tracked."""

    command_class = TrackedCommand
    group_class = type  # sub-groups are TrackedGroups too
