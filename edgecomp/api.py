"""The Python API: what each `edgecomp` command does, as a function.

    from edgecomp import api

    data = {"id_col": "detector", "value_cols": ("total",)}
    dataset = api.load_data("counts.parquet", input_len=48, horizon=8, **data)
    checkpoint = api.train("counts.parquet", "ckpt/tcn", arch="tcn", data_options=data)
    artifact = api.build(checkpoint, "counts.parquet", "tcn-int8.edgepkg", precision="int8")
    benches = api.bench([artifact], data="counts.parquet")
    api.report(benches, "report/")

The names are those of the commands, so they live in this module rather than at the package's top
level, where ``edgecomp.train``, ``edgecomp.tune``, ``edgecomp.bench`` and ``edgecomp.report``
are the modules that implement them. ``edgecomp.build`` is the lower-level build of an in-memory
model and dataset (``edgecomp.pipeline.build``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["bench", "build", "load_data", "report", "train", "tune"]


def load_data(path: str | Path, *, input_len: int = 48, horizon: int = 8, **options: Any) -> Any:
    """Read, impute, scale, window and split a CSV/Parquet file (`edgecomp data`).

    Args:
        path: CSV or Parquet file.
        input_len: Input window L in steps.
        horizon: Forecast horizon H in steps.
        **options: Any other ``edgecomp.DataConfig`` field (id_col, value_cols, features,
            targets, split, time_col, ...).

    Returns:
        An ``edgecomp.data.Dataset`` (train, val and test windows, scaler, observed masks).
    """
    from edgecomp.data import DataConfig, prepare

    return prepare(path, DataConfig(input_len=input_len, horizon=horizon, **options))


def train(
    data: str | Path,
    out: str | Path,
    *,
    arch: str = "lstm",
    input_len: int = 48,
    horizon: int = 8,
    data_options: dict[str, Any] | None = None,
    calendar: str | Sequence[str] = "auto",
    **train_options: Any,
) -> Path:
    """Train a forecaster on ``data`` and write its checkpoint folder (`edgecomp train`).

    Args:
        data: CSV or Parquet file.
        out: Checkpoint folder to write (model.safetensors, spec.json, train.json, eval.json).
        arch: A registered architecture (``edgecomp.models.MODELS``).
        input_len: Input window L in steps.
        horizon: Forecast horizon H in steps.
        data_options: Other ``DataConfig`` fields (id_col, value_cols, features, ...); a
            ``calendar`` there is the same as the ``calendar`` argument.
        calendar: As `edgecomp train --calendar`: ``"auto"`` (keep the calendar features suited
            to the sampling period only if they lower the validation MAE; the choice is in the
            checkpoint's eval.json), ``"on"``, ``"off"``, or the feature names to use.
        **train_options: ``edgecomp.TrainConfig`` fields (hparams, epochs, lr, ...).

    Returns:
        The checkpoint folder.

    Raises:
        ValueError: ``calendar`` is none of the above.
    """
    from edgecomp.data import DataConfig
    from edgecomp.train import TrainConfig
    from edgecomp.workflow import train_checkpoint

    options = dict(data_options or {})
    mode = _calendar_mode(options.pop("calendar", calendar))
    config = DataConfig(
        input_len=input_len,
        horizon=horizon,
        calendar=None if isinstance(mode, str) else mode,
        **options,
    )
    train_config = TrainConfig(arch=arch, **train_options)
    if isinstance(mode, str):
        from edgecomp.calendar_choice import train_with_calendar_choice

        outcome = train_with_calendar_choice(data, config, train_config, Path(out), mode=mode)
    else:
        outcome = train_checkpoint(data, config, train_config, Path(out))
    return Path(outcome.path)


def _calendar_mode(value: Any) -> str | tuple[str, ...] | None:
    """``"auto"`` / ``"on"``, the feature names, or None (off) from a ``calendar`` argument."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("off", "none")):
        return None
    if isinstance(value, str) and value.strip().lower() in ("auto", "on"):
        return value.strip().lower()
    names = tuple(n.strip() for n in value.split(",")) if isinstance(value, str) else value
    if (
        not isinstance(names, tuple | list)
        or not names
        or not all(isinstance(n, str) for n in names)
    ):
        raise ValueError(
            f"calendar: expected 'auto', 'on', 'off' or calendar feature names, got {value!r}"
        )
    return tuple(names)


def build(
    source: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    target: str = "x86-64-avx2",
    precision: str = "fp32",
    **build_options: Any,
) -> Path:
    """Compile ``source`` for a target, verified on ``data``'s test split (`edgecomp build`).

    Args:
        source: A checkpoint folder, ``module.py:factory`` (with ``weights=``), TorchScript or
            ONNX file (with ``spec_path=`` or ``input_len=``/``horizon=``).
        data: The data the model was trained on.
        out: The .edgepkg to write (atomically; nothing is written if the build fails).
        target: A target profile (``edgecomp targets``).
        precision: A precision the target declares (fp32, int8, int4, ...).
        **build_options: Other ``edgecomp.BuildConfig`` fields, and ``weights``, ``spec_path``,
            ``input_len``, ``horizon``, ``sign_key`` for the front end.

    Returns:
        The artifact path.

    Raises:
        BudgetNotMet: The artifact would break its error budget; nothing was written.
    """
    from edgecomp.pipeline import BuildConfig
    from edgecomp.workflow import build_artifact

    front = {k: build_options.pop(k) for k in _FRONT_END if k in build_options}
    config = BuildConfig(target=target, precision=precision, **build_options)
    build_artifact(str(source), data, config, out, **front)
    return Path(out)


_FRONT_END = ("weights", "spec_path", "input_len", "horizon", "sign_key")


def bench(
    artifacts: Sequence[str | Path], *, data: str | Path | None = None, **options: Any
) -> list[dict[str, Any]]:
    """Measure artifacts through the runtime on this host (`edgecomp bench`).

    Args:
        artifacts: .edgepkg files.
        data: The data file, for per-step error on observed test values.
        **options: ``edgecomp.bench.bench_artifact`` options (batch_sizes, threads, ...).

    Returns:
        One bench dict per artifact (the report.json that `edgecomp report` reads).
    """
    from edgecomp.bench import bench_artifact

    return [bench_artifact(path, data=data, **options) for path in artifacts]


def tune(
    source: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    constraints: dict[str, Any] | None = None,
    **tune_options: Any,
) -> Any:
    """Search compression recipes under error, latency and size limits (`edgecomp tune`).

    Args:
        source: The model (as for ``build``).
        data: Its data.
        out: Folder for results.json, pareto.md, recipe.toml and the chosen artifact.
        constraints: ``edgecomp.tune.Constraints`` fields (max_error_increase, max_p99_ms, ...).
        **tune_options: ``edgecomp.tune.TuneConfig`` fields (target, strategy, trials, ...).

    Returns:
        An ``edgecomp.tune.TuneResult``.
    """
    from edgecomp.tune import Constraints, TuneConfig
    from edgecomp.tune import tune as run_tune
    from edgecomp.workflow import ingest

    model, dataset = ingest(str(source), data)
    out = Path(out)
    if "storage" not in tune_options:
        tune_options["storage"] = f"sqlite:///{(out / 'study.db').resolve()}"
    out.mkdir(parents=True, exist_ok=True)
    config = TuneConfig(**tune_options)
    return run_tune(model, dataset, config, Constraints(**(constraints or {})), out)


def report(
    benches: Sequence[dict[str, Any]] | Sequence[str | Path],
    out: str | Path,
    *,
    baseline: str | Path | None = None,
    title: str = "edgecomp report",
) -> dict[str, Any]:
    """Compare benched artifacts: JSON, Markdown, HTML and plots (`edgecomp report`).

    Args:
        benches: Bench dicts (from ``bench``) or paths that `edgecomp report` reads.
        out: Folder to write report.json, report.md, report.html and the plots to.
        baseline: A previous report.json; regressions against it are flagged.
        title: The report's title.

    Returns:
        The report dict; ``report["regression"]["passed"]`` is the regression verdict.
    """
    from edgecomp.report import build_report, load_inputs, write_report_files

    runs = [b for b in benches if isinstance(b, dict)]
    paths = [b for b in benches if not isinstance(b, dict)]
    if paths:
        runs += load_inputs(paths)
    built = build_report(runs, title=title, baseline=baseline)
    write_report_files(built, Path(out))
    return built
