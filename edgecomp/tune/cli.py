"""The `edgecomp tune` command (registered in edgecomp.cli.COMMAND_MODULES)."""

from __future__ import annotations

import click

from edgecomp.budget import budget_options
from edgecomp.cliopts import RequiredOption, json_output, renamed
from edgecomp.dataflags import read_flags
from edgecomp.tracking import TrackedCommand

_SAMPLERS = ["grid", "random", "tpe", "gp", "nsga2", "motpe"]


@click.command(cls=TrackedCommand)
@click.argument("source")
@click.option("--data", "data_path", type=click.Path(exists=True, dir_okay=False), required=True)
@read_flags
@click.option("--target", "-t", default="x86-64-avx2", show_default=True, help="Target profile.")
@click.option(
    "--sampler",
    type=click.Choice(_SAMPLERS),
    default="tpe",
    show_default=True,
    help="Optuna sampler; nsga2 and motpe search error, latency and size at once.",
)
@click.option("--trials", default=30, show_default=True, help="Trials of the whole study.")
@click.option("--timeout", type=float, help="Stop this process after this many seconds.")
@click.option(
    "--objective",
    type=click.Choice(["latency", "size", "error"]),
    default="latency",
    show_default=True,
    help="What single-objective strategies minimize (and what picks the chosen recipe).",
)
@budget_options
@click.option("--max-p99-ms", type=float, help="p99 latency at batch 1 through the runtime.")
@click.option("--max-size-kb", type=float, help="Artifact size in KiB.")
@click.option("--max-memory-mb", type=float, help="Peak RSS of a runtime process (measured).")
@click.option("--space", "space_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--students/--no-students", default=True, help="Search distilled students too.")
@click.option("--finetune-epochs", default=10, show_default=True)
@click.option("--storage", help="Optuna storage URL [default: sqlite:///OUT/study.db].")
@click.option("--study-name", default="edgecomp-tune", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--allow-mixed-hosts",
    is_flag=True,
    help="Let this host add trials to a study measured on another host (latencies then mix).",
)
@click.option(
    "--heartbeat",
    "heartbeat_s",
    type=click.FloatRange(min=1),
    default=30.0,
    show_default=True,
    help="Seconds between worker heartbeats; a dead worker's trial is failed after twice this.",
)
@click.option("--build/--no-build", "build_chosen", default=True, help="Build the chosen recipe.")
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False),
    cls=RequiredOption,
    help="Folder for results.json, pareto.md, pareto.png, recipe.toml, the study and artifact.",
)
@click.option("--weights", type=click.Path(exists=True, dir_okay=False))
@click.option("--spec", "spec_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--input-len", "-L", type=int)
@click.option("--horizon", "-H", type=int)
@renamed("-o", "--out", to="--out-dir", required=True, type=click.Path(file_okay=False))
@renamed("--strategy", to="--sampler", type=click.Choice(_SAMPLERS))
@json_output
def tune(source: str, data_path: str, out_dir: str, **kw) -> dict:
    """Search compression recipes for SOURCE under error, latency, size and memory limits.

    Every trial's recipe is measured on validation windows and through the runtime on this
    host; the study is kept in --storage (resumable; share it to search from several machines).
    Writes OUT_DIR/results.json, pareto.md, pareto.png, recipe.toml and the chosen artifact.
    """
    from pathlib import Path

    from edgecomp.tune import Constraints, TuneConfig
    from edgecomp.workflow import ingest

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from edgecomp.budget import budget_from_flags

    budget_keys = ("max_error_increase", "max_error", "at_horizon", "no_error_limit")
    constraints = Constraints.from_budget(
        budget_from_flags(*(kw.pop(k) for k in budget_keys)),
        max_p99_ms=kw.pop("max_p99_ms"),
        max_size_kb=kw.pop("max_size_kb"),
        max_memory_mb=kw.pop("max_memory_mb"),
    )
    model, dataset = ingest(
        source,
        data_path,
        weights=kw.pop("weights"),
        spec_path=kw.pop("spec_path"),
        input_len=kw.pop("input_len"),
        horizon=kw.pop("horizon"),
    )
    _check_horizon(constraints, model.spec.horizon)
    storage = kw.pop("storage") or f"sqlite:///{(out_dir / 'study.db').resolve()}"
    space_file, students, build_chosen = (
        kw.pop("space_file"),
        kw.pop("students"),
        kw.pop("build_chosen"),
    )
    config = TuneConfig(storage=storage, strategy=kw.pop("sampler"), **kw)
    return _run(model, dataset, config, constraints, out_dir, space_file, students, build_chosen)


def _check_horizon(constraints, horizon: int) -> None:
    if constraints.horizon is not None and not 1 <= constraints.horizon <= horizon:
        raise click.BadParameter(
            f"--at-horizon {constraints.horizon}: the model forecasts steps 1..{horizon}"
        )


def _run(model, dataset, config, constraints, out_dir, space_file, students, build_chosen) -> dict:
    from edgecomp.cli import console
    from edgecomp.tune import TuneError, tune

    console.print(
        f"tuning for {config.target} with {config.strategy}, {config.trials} trials, "
        f"study '{config.study_name}' in {config.storage}; limits: {constraints.describe()}"
    )
    with _Progress(config, constraints) as progress:
        result = tune(
            model,
            dataset,
            config,
            constraints,
            out_dir,
            space_file=space_file,
            students=students,
            build_chosen=build_chosen,
            on_trial=progress.update,
        )
    if result.interrupted:
        console.print("[yellow]interrupted:[/yellow] finished trials are kept in the study")
    console.print(f"{_tally(result)}; results in {out_dir}/")
    if result.chosen is None:
        raise TuneError(result.error or "no recipe chosen")
    m = result.chosen["measured"]
    console.print(
        f"chosen (trial {result.chosen['trial']}): {result.chosen['summary']}: "
        f"MAE {100 * m['error_increase']:+.2f} % (worst step, validation), "
        f"p50 {m['p50_ms']:.3f} ms, p99 {m['p99_ms']:.3f} ms, {m['size_bytes'] / 1024:.1f} KiB "
        f"-> {out_dir}/recipe.toml"
    )
    if result.artifact is not None:
        console.print(f"built {result.artifact} (verified on the test split)")
    import json

    return {
        "out_dir": str(out_dir),
        "interrupted": result.interrupted,
        "chosen": result.chosen,
        "artifact": None if result.artifact is None else str(result.artifact),
        "results": json.loads((out_dir / "results.json").read_text())
        if (out_dir / "results.json").is_file()
        else None,
    }


def _tally(result) -> str:
    """'N distinct recipes measured', with the failed trials counted and the first one's error."""
    text = f"{len(result.rows)} distinct recipes measured"
    if not result.failed:
        return text
    first = result.failed[0]
    plural = "s" if len(result.failed) > 1 else ""
    return (
        f"{text}, {len(result.failed)} trial{plural} failed (first: trial {first['trial']} "
        f"{first['summary']}: {first['error']})"
    )


class _Progress:
    """A rich progress bar: finished trials, best feasible value so far, time left."""

    def __init__(self, config, constraints) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        from edgecomp import progress
        from edgecomp.tune.study import OBJECTIVES

        self._key = OBJECTIVES[config.objective]
        self._constraints = constraints
        self._best: float | None = None
        self._bar = Progress(
            TextColumn("trials {task.completed}/{task.total}"),
            BarColumn(),
            TextColumn("best {task.fields[best]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),  # stdout holds results (and --json) only
            transient=False,
            disable=not progress.enabled(),
        )
        self._task = self._bar.add_task("tune", total=config.trials, best="-")

    def __enter__(self) -> _Progress:
        self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self._bar.stop()

    def update(self, finished: int, measured: dict | None) -> None:
        if measured is not None and all(
            v <= 0 for v in self._constraints.violations(measured).values()
        ):
            value = measured[self._key]
            self._best = value if self._best is None else min(self._best, value)
        best = "-" if self._best is None else f"{self._best:.4g} ({self._key})"
        self._bar.update(self._task, completed=finished, best=best)
