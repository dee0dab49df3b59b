"""The `edgecomp` command line: thin wrappers over the library."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgecomp import exits, progress
from edgecomp.budget import budget_options  # noqa: F401 - re-exported for building commands
from edgecomp.cliopts import (
    QUIET_HELP,
    VERBOSE_HELP,
    ExitWith,
    RequiredOption,
    json_output,
    renamed,
)
from edgecomp.dataflags import flag_options, parse_names, read_flags
from edgecomp.tracking import ENV as _MLFLOW_ENV
from edgecomp.tracking import TrackedGroup

# a terminal gets its own width (wider lines would wrap mid-number); logs and pipes 120 columns
_WIDTH = None if sys.stdout.isatty() else max(Console().width, 120)
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=_WIDTH)  # errors: never on stdout


class _Group(TrackedGroup):
    """Turn the library's ValueError-family errors into one red line and exit code 2."""

    def invoke(self, ctx: click.Context):
        from edgecomp.budget import BudgetNotMet

        try:
            return super().invoke(ctx)
        except BudgetNotMet as exc:  # nothing was written; its own exit code
            message = f"[red]budget not met:[/red] {escape(str(exc))}"
            err_console.print(message, highlight=False, soft_wrap=True)
            sys.exit(exits.BUDGET_NOT_MET)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # --help, --version, usage errors: click's own handling
        except Exception as exc:
            if not _input_error(exc):
                raise
            message = f"[red]error:[/red] {escape(str(exc))}"
            err_console.print(message, highlight=False, soft_wrap=True)
            sys.exit(exits.USAGE)


def _input_error(exc: Exception) -> bool:
    """Bad input (one line, exit 2) rather than a bug; the runtime is imported only here, so
    that `--help` stays fast."""
    from edgecomp_runtime import EdgecompRuntimeError

    input_errors = (ValueError, EdgecompRuntimeError, FileNotFoundError, FileExistsError)
    return isinstance(exc, input_errors)


@click.group(cls=_Group, context_settings={"auto_envvar_prefix": "EDGECOMP"}, epilog=exits.HELP)
@click.version_option(package_name="edgecomp")
@click.option(
    "--mlflow",
    "mlflow_uri",
    envvar=_MLFLOW_ENV,
    metavar="URI",
    help=f"Track the command as an MLflow run (e.g. sqlite:///mlflow.db) [env: {_MLFLOW_ENV}].",
)
@click.option("--quiet", "-q", is_flag=True, help=QUIET_HELP)
@click.option("--verbose", "-v", is_flag=True, help=VERBOSE_HELP)
@click.pass_context
def main(ctx: click.Context, mlflow_uri: str | None, quiet: bool, verbose: bool) -> None:
    """edgecomp: compile spatio-temporal forecasters for edge gateways."""
    ctx.obj = {"mlflow": mlflow_uri}
    progress.configure(quiet=quiet, verbose=verbose)  # before any toolchain loads


def _data_options(fn):
    opts = [
        click.option("--time-col", default=None, help="Time column (default: detected)."),
        click.option("--id-col", default=None, help="Series id column for long-format data."),
        click.option(
            "--value-col", "value_cols", multiple=True, help="Value column(s), long format."
        ),
        click.option(
            "--features", default=None, help="Comma-separated input features (default all)."
        ),
        click.option(
            "--targets", default=None, help="Comma-separated targets (default: features)."
        ),
        click.option(
            "--split",
            default="0.7,0.15,0.15",
            show_default=True,
            help="Train,val,test fractions (chronological).",
        ),
        click.option("--stride", default=1, show_default=True),
        click.option(
            "--interpolate-limit",
            default=4,
            show_default=True,
            help="Max steps per gap filled by interpolation; the rest is forward filled.",
        ),
        click.option(
            "--spike-threshold",
            type=float,
            default=None,
            help="Treat values whose robust z-score against the training split exceeds this "
            "as missing (unit spikes); off by default, spikes above 20 are always reported.",
        ),
        *flag_options(time_col=False),
        click.option(
            "--season",
            callback=_seasons,
            help="Seasonal-naive baseline periods in steps, STEPS[,STEPS] or 'none' [default: a "
            "day and a week for sub-daily data, a week for daily data].",
        ),
        click.option(
            "--target-transform",
            type=click.Choice(["auto", "none", "clamp"]),
            default="auto",
            show_default=True,
            help="Keep forecasts >= 0: auto for targets never negative in training, clamp for "
            "all targets (refused if one is negative), none for no bound.",
        ),
        click.option(
            "--calendar",
            callback=_calendar,
            help="Calendar features fed for the forecast steps: comma-separated among hour, "
            "dow, doy (sine/cosine of hour of day, day of week, day of year, UTC); 'off' (or "
            "'none'); for train also 'on' (the ones suited to the sampling period) and 'auto': "
            "compare with and without on validation MAE, keep the lower [default: auto for "
            "train, off elsewhere].",
        ),
        click.option(
            "--future-cols",
            callback=lambda ctx, param, value: parse_names(value),
            help="Comma-separated features known in advance (a holiday flag, a schedule): fed for "
            "the forecast steps too; predict then takes their next H values (future=).",
        ),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _seasons(ctx: click.Context, param: click.Parameter, value: str | None):
    if value is None:
        return None
    if value.strip().lower() == "none":
        return ()
    try:
        steps = tuple(int(v) for v in value.split(","))
    except ValueError:
        steps = ()
    if not steps or min(steps) < 1:
        raise click.BadParameter(f"'{value}' is not STEPS[,STEPS] (positive integers) or 'none'")
    return steps


def _calendar(ctx: click.Context, param: click.Parameter, value: str | None):
    from edgecomp_runtime.calendar import CALENDAR

    names = parse_names(value)
    if value is not None and value.strip().lower() in ("none", "off", "auto", "on"):
        return {"none": None, "off": None}.get(value.strip().lower(), value.strip().lower())
    unknown = [n for n in names or () if n not in CALENDAR]
    if value is not None and (not names or unknown):
        raise click.BadParameter(
            f"'{value}' is not a list of {', '.join(CALENDAR)}, or auto, on, off"
        )
    return names


def _data_config(input_len: int, horizon: int, kw: dict):
    from edgecomp.data import DataConfig

    if kw["calendar"] in ("auto", "on"):
        raise click.BadParameter(
            f"'{kw['calendar']}' applies to `edgecomp train` only", param_hint="--calendar"
        )

    def names(value):
        return tuple(v.strip() for v in value.split(",")) if value else None

    return DataConfig(
        input_len=input_len,
        horizon=horizon,
        stride=kw["stride"],
        features=names(kw["features"]),
        targets=names(kw["targets"]),
        split=tuple(float(v) for v in kw["split"].split(",")),
        interpolate_limit=kw["interpolate_limit"],
        spike_threshold=kw["spike_threshold"],
        time_col=kw["time_col"],
        id_col=kw["id_col"],
        value_cols=tuple(kw["value_cols"]) or None,
        exclude=kw["exclude"],
        drop_sparse=kw["drop_sparse"],
        on_duplicate=kw["on_duplicate"] or "error",
        seasons=kw["season"],
        target_transform=kw["target_transform"],
        calendar=kw["calendar"],
        future_cols=kw["future_cols"],
    )


@main.command("data")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--input-len", "-L", default=48, show_default=True)
@click.option("--horizon", "-H", default=8, show_default=True)
@_data_options
@json_output
def data_cmd(path: str, input_len: int, horizon: int, **kw) -> dict:
    """Inspect a CSV/Parquet file: period, gaps, missing values, windows per split, and an
    input length and horizon suggested for its sampling period."""
    from edgecomp.data.summary import format_summary, prepare_summary, suggest_windows

    source = click.get_current_context().get_parameter_source
    default = {source(p) for p in ("input_len", "horizon")} == {click.core.ParameterSource.DEFAULT}
    config = _data_config(input_len, horizon, kw)
    dataset, note = prepare_summary(path, config, default_window=default)
    summary = dataset.summary()
    summary["notes"] = [note, *summary["notes"]] if note else summary["notes"]
    summary["suggested"] = suggest_windows(
        summary["period_s"], summary["rows"], business_days=summary["business_days"]
    )
    if not progress.STATE["json"]:
        click.echo(format_summary(summary), nl=False)
    return summary


def _archs() -> list[str]:
    """The registered architectures (``edgecomp.models.MODELS``), for ``--arch``."""
    from edgecomp.archs import ARCHS

    return list(ARCHS)


@main.command()
@click.argument("data", type=click.Path(exists=True, dir_okay=False))
@click.option("--arch", type=click.Choice(_archs()), default="lstm", show_default=True)
@click.option("--input-len", "-L", default=48, show_default=True, help="Input window (steps).")
@click.option("--horizon", "-H", default=8, show_default=True, help="Forecast horizon (steps).")
@click.option("--hparam", multiple=True, help="Architecture hyperparameter KEY=VALUE (JSON value).")
@click.option("--epochs", default=30, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--loss", type=click.Choice(["mse", "mae"]), default="mse", show_default=True)
@click.option("--patience", default=5, show_default=True, help="Early-stopping patience (epochs).")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False),
    cls=RequiredOption,
    help="Checkpoint folder to write.",
)
@_data_options
@renamed("-o", "--out", to="--out-dir", required=True, type=click.Path(file_okay=False))
@json_output
def train(
    data: str, arch: str, input_len: int, horizon: int, hparam: tuple[str, ...], out_dir: str, **kw
) -> dict:
    """Train a forecaster on DATA and write a checkpoint (safetensors + spec.json + TensorBoard)."""
    from edgecomp.train import TrainConfig
    from edgecomp.workflow import train_checkpoint

    train_keys = ("epochs", "batch_size", "lr", "loss", "patience", "seed")
    config = TrainConfig(
        arch=arch, hparams=_parse_pairs(hparam, "--hparam"), **{k: kw.pop(k) for k in train_keys}
    )
    source = click.get_current_context().get_parameter_source("calendar")
    if kw["calendar"] in ("auto", "on") or source == click.core.ParameterSource.DEFAULT:
        mode, kw["calendar"] = kw["calendar"] or "auto", None
        data_config = _data_config(input_len, horizon, kw)
        result = _train_auto_calendar(data, data_config, config, Path(out_dir), mode)
    else:
        result = train_checkpoint(
            data,
            _data_config(input_len, horizon, kw),
            config,
            Path(out_dir),
            console=_log_console(),
        )
    ev = result.evaluation
    console.print(f"{ev['train']['stop_reason']}; kept epoch {ev['train']['best_epoch']}")
    console.print(result.table())
    if ev.get("left_out"):
        console.print(f"{ev['left_out']} test windows left out: the runtime would refuse them")
    for warning in ev["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    return {"checkpoint": str(result.path), "arch": result.model.spec.arch, "evaluation": ev}


def _train_auto_calendar(data: str, data_config, config, out: Path, mode: str = "auto"):
    """``--calendar auto|on``: see ``edgecomp.calendar_choice``."""
    from edgecomp.calendar_choice import train_with_calendar_choice

    return train_with_calendar_choice(
        data, data_config, config, out, console=_log_console(), mode=mode
    )


def _log_console() -> Console | None:
    """Where log lines (epochs, choices) go: the console, or nowhere with --quiet."""
    return None if progress.STATE["quiet"] else console


def _parse_pairs(items: tuple[str, ...], flag: str) -> dict:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"'{item}' is not KEY=VALUE", param_hint=flag)
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


@main.command()
@click.argument("source")
@click.option(
    "--data",
    "data_path",
    type=click.Path(exists=True, dir_okay=False),
    required=True,
    help="Data file: calibration from its training split, verification on its test split.",
)
@click.option("--target", "-t", help="Target profile [default: x86-64-avx2, or the recipe's].")
@click.option("--precision", "-p", help="Precision [default: int8, or the recipe's].")
@click.option(
    "--out",
    "-o",
    type=click.Path(),
    required=True,
    help="Artifact to write (.edgepkg; for a recipe with several lowerings, a folder of them).",
)
@click.option(
    "--weights",
    type=click.Path(exists=True, dir_okay=False),
    help="Weights for a module.py:factory source.",
)
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(exists=True, dir_okay=False),
    help="ModelSpec JSON for a non-checkpoint source.",
)
@click.option("--input-len", "-L", type=int, help="Window length, when no spec JSON is given.")
@click.option("--horizon", "-H", type=int, help="Horizon, when no spec JSON is given.")
@click.option("--calibration-windows", type=int, help="Calibration windows [default: 256].")
@click.option(
    "--option",
    "options",
    multiple=True,
    help="Override a profile lowering option KEY=VALUE (JSON value), e.g. "
    "keep_float='[\"input\"]' or per_channel=true.",
)
@click.option(
    "--sign",
    "sign_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Sign the artifact with this ed25519 private key (PEM, from `edgecomp keygen`).",
)
@click.option(
    "--recipe",
    "recipe_path",
    type=click.Path(dir_okay=False),
    help="TOML build recipe: model passes, then lowerings; flags given here override it.",
)
@click.option("--set", "sets", multiple=True, help="Override a recipe pass option PASS.KEY=VALUE.")
@click.option(
    "--save-model", type=click.Path(file_okay=False), help="Also save the recipe's model here."
)
@budget_options
@read_flags
@json_output
def build(
    source: str,
    data_path: str,
    out: str,
    weights: str | None,
    spec_path: str | None,
    input_len: int | None,
    horizon: int | None,
    options: tuple[str, ...],
    sign_path: str | None,
    recipe_path: str | None,
    sets: tuple[str, ...],
    save_model: str | None,
    **lowering,
) -> dict:
    """Compile SOURCE (checkpoint folder, module.py:factory, TorchScript or ONNX) for a target.

    The artifact keeps an error budget on the test split's observed values (default: MAE +1 %
    at every step); on a breach the fallback ladder runs, and if nothing meets the budget nothing
    is written and the exit code is 3.
    """
    from edgecomp.budget import budget_from_flags
    from edgecomp.passes.recipe import Recipe, load_recipe
    from edgecomp.workflow import build_recipe, ingest
    from edgecomp_runtime.signing import load_private_key

    sign_key = None if sign_path is None else load_private_key(sign_path)  # fail before building
    flags = [lowering.pop(k) for k in ("max_error_increase", "max_error", "at_horizon")]
    budget = budget_from_flags(*flags, lowering.pop("no_error_limit"))  # bad budget: fail first
    recipe = load_recipe(recipe_path) if recipe_path else Recipe(source="command line")
    lowering["options"] = _parse_pairs(options, "--option") or None
    recipe = recipe.with_overrides(_parse_pairs(sets, "--set"), **lowering)
    model, dataset = ingest(
        source,
        data_path,
        weights=weights,
        spec_path=spec_path,
        input_len=input_len,
        horizon=horizon,
    )
    if budget is not None:
        budget.steps(model.spec.horizon)  # --at-horizon beyond the horizon: refused before work
    with _build_progress(source) as log:
        results = build_recipe(
            model,
            dataset,
            recipe,
            out,
            sign_key=sign_key,
            save_model=save_model,
            log=log,
            budget=budget,
        )
    for result in results:
        _print_built(result)
    signer = None
    if sign_key is not None:
        from edgecomp_runtime.signing import key_id

        signer = key_id(sign_key.public_key())
        console.print(f"signed with ed25519 key {signer}")
    return {"artifacts": [_built_record(r) for r in results], "signed_by": signer}


@contextlib.contextmanager
def _build_progress(source: str):
    """A spinner on stderr naming the build stage (calibration, verification) and each ladder
    rung as it runs; yields the build's ``log`` (silent with --quiet)."""
    from edgecomp.ladder import RUNG_HOOKS
    from edgecomp.pipeline import STAGE_HOOKS

    names = {"resolve": "resolving the target and calibration", "passes": "model passes",
             "lower": "lowering and calibrating", "verify": "verifying on held-out data",
             "gate": "checking the error budget", "package": "packaging"}  # fmt: skip
    log = progress.log_line(console)
    rung = [""]
    with progress.bar(f"building {Path(source).name}") as bar:

        def on_stage(name: str, ctx) -> None:
            where = f"{ctx.config.target} {ctx.config.precision}{rung[0]}"
            bar(f"{where}: {names.get(name, name)}")

        def on_rung(name: str) -> None:
            rung[0] = f" (budget missed; ladder rung {name})"
            bar.describe(f"error budget missed: ladder rung '{name}'")

        STAGE_HOOKS.append(on_stage)
        RUNG_HOOKS.append(on_rung)
        try:
            yield log
        finally:
            STAGE_HOOKS.remove(on_stage)
            RUNG_HOOKS.remove(on_rung)


def _built_record(result) -> dict:
    """One artifact of a build, for --json."""
    manifest = result.manifest
    metrics = manifest["metrics"]
    return {
        "path": str(result.path),
        "size_bytes": result.path.stat().st_size if result.path.is_file() else None,
        "target": manifest["target"]["name"],
        "precision": manifest["precision"],
        "mae": {"artifact": metrics["artifact"]["mae"], "reference": metrics["reference"]["mae"]},
        "n_scored": metrics["artifact"].get("n_scored"),
        "n_imputed": metrics["artifact"].get("n_imputed"),
        "budget": manifest.get("budget"),
    }


def _print_built(result, out: Console | None = None) -> None:
    """Two short lines per artifact, wrapped (if at all) between words, never inside a number."""
    metrics = result.manifest["metrics"]
    pairs = [
        (a, r)
        for a, r in zip(metrics["artifact"]["mae"], metrics["reference"]["mae"], strict=True)
        if a is not None and r is not None
    ]
    worst = max(((a / r - 1) * 100 for a, r in pairs if r > 0), default=0.0)
    art, ref = [a for a, _ in pairs] or [float("nan")], [r for _, r in pairs] or [float("nan")]
    target, precision = result.manifest["target"]["name"], result.manifest["precision"]
    budget = result.manifest.get("budget") or {}
    met = f"; budget met by: {budget['met_by']}" if budget.get("checked") else ""
    out = out or console
    size = result.path.stat().st_size if result.path.is_file() else 0
    out.print(f"wrote {result.path} ({size:,} B): {target} {precision}", highlight=False)
    out.print(
        f"  MAE {sum(art) / len(art):.4g} vs reference {sum(ref) / len(ref):.4g}, worst step "
        f"{worst:+.2f} %; {metrics['artifact'].get('n_scored', 0):,} observed values scored, "
        f"{metrics['artifact'].get('n_imputed', 0):,} imputed left out{met}",
        highlight=False,
    )


@main.command()
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace existing key files.")
@json_output
def keygen(out: str, force: bool) -> dict:
    """Write a new ed25519 key pair: OUT (private, PEM, mode 0600) and OUT.pub (public, PEM)."""
    from edgecomp_runtime.signing import key_id, load_private_key, new_key_pair

    private_path, public_path = Path(out), Path(out + ".pub")
    for path in (private_path, public_path):
        if path.exists() and not force:
            raise FileExistsError(f"{path} exists; pass --force to replace it")
    private_pem, public_pem = new_key_pair()
    _write_private(private_path, private_pem)
    public_path.write_bytes(public_pem)
    kid = key_id(load_private_key(private_pem).public_key())
    console.print(
        f"wrote {private_path} (private, keep it secret) and {public_path} (public, key id {kid})"
    )
    return {"private_key": str(private_path), "public_key": str(public_path), "key_id": kid}


def _write_private(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only (created 0600, never group/world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(data)


def _bench_options(fn):
    """The measurement options shared by `bench` and `report`."""
    opts = [
        click.option(
            "--batch", "batch_sizes", multiple=True, type=int, default=(1, 64), show_default=True
        ),
        click.option("--threads", default=1, show_default=True),
        click.option("--min-iters", default=200, show_default=True),
        click.option("--min-seconds", default=2.0, show_default=True),
        click.option(
            "--no-memory", is_flag=True, help="Skip the fresh-process peak-memory measurement."
        ),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


@main.command()
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--data",
    "data_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Data file for per-horizon error (windowed as the artifact's spec says).",
)
@read_flags
@_bench_options
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False),
    default="bench-out",
    show_default=True,
    help="Folder for report.json and report.md.",
)
@click.option(
    "--device",
    help="Measure on a device with edgecomp-runtime bench: local, qemu-aarch64, "
    "ssh://user@host[:port] or a name in --devices-file (--data: a wide CSV/Parquet file).",
)
@click.option("--devices-file", type=click.Path(dir_okay=False), help="default ./devices.toml")
@click.option(
    "--wheelhouse",
    type=click.Path(exists=True, file_okay=False),
    help="Dependency wheels to copy to a --device without a package index.",
)
@click.option("--any-arch", is_flag=True, help="Measure artifacts built for another CPU arch.")
@renamed("-o", "--out", to="--out-dir", type=click.Path(file_okay=False))
@json_output
def bench(
    artifacts: tuple[str, ...],
    data_path: str | None,
    batch_sizes: tuple[int, ...],
    threads: int,
    min_iters: int,
    min_seconds: float,
    no_memory: bool,
    out_dir: str,
    device: str | None,
    devices_file: str | None,
    wheelhouse: str | None,
    any_arch: bool,
) -> list:
    """Measure ARTIFACTS through the runtime; write report.json and report.md to --out-dir."""
    from edgecomp.bench import bench_artifact, print_summary, write_report

    if device:
        from edgecomp.bench.device import bench_cli

        reports = bench_cli(
            device, artifacts, data=data_path, batch_sizes=batch_sizes, threads=threads,
            min_iters=min_iters, min_seconds=min_seconds, devices_file=devices_file,
            wheelhouse=wheelhouse, any_arch=any_arch,
        )  # fmt: skip
    else:
        reports = []
        with progress.bar("benchmarking", total=len(artifacts)) as bar:
            for artifact in artifacts:
                bar.describe(f"benchmarking {Path(artifact).name}")
                reports.append(
                    bench_artifact(
                        artifact,
                        data=data_path,
                        batch_sizes=batch_sizes,
                        threads=threads,
                        min_iters=min_iters,
                        min_seconds=min_seconds,
                        memory=not no_memory,
                    )
                )
                bar()
    paths = write_report(reports, Path(out_dir))
    if not progress.STATE["json"]:
        print_summary(reports, console=console)
    progress.log_line(console)("wrote " + ", ".join(str(p) for p in paths.values()))
    return reports


@main.command("report")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--data",
    "data_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Data file for per-horizon error of the artifacts benched now.",
)
@read_flags
@_bench_options
@click.option(
    "--baseline",
    type=click.Path(exists=True),
    help="Earlier report.json or bench report.json (or its folder) to check for regressions.",
)
@click.option(
    "--fail-on-regression",
    is_flag=True,
    help="Exit with code 1 when the --baseline check finds a regression (default: report only).",
)
@click.option(
    "--confirm",
    default=2,
    show_default=True,
    help="With --baseline: measure an artifact whose latency looks regressed up to N more times "
    "(the fastest p50 per batch size counts), so a burst of load on the machine is not a "
    "regression.",
)
@click.option("--title", default="edgecomp report", show_default=True)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False),
    default="report-out",
    show_default=True,
    help="Folder for report.html, report.md, report.json and the plots.",
)
@renamed("-o", "--out", to="--out-dir", type=click.Path(file_okay=False))
@json_output
def report_cmd(
    inputs: tuple[str, ...],
    data_path: str | None,
    batch_sizes: tuple[int, ...],
    threads: int,
    min_iters: int,
    min_seconds: float,
    no_memory: bool,
    baseline: str | None,
    fail_on_regression: bool,
    confirm: int,
    title: str,
    out_dir: str,
) -> dict:
    """Compare INPUTS (artifacts, folders of them, or bench JSONs): tables, plots, JSON/MD/HTML."""
    from edgecomp.bench import print_summary
    from edgecomp.report import (
        build_report,
        format_summary,
        load_bench_json,
        load_inputs,
        remeasure_flagged,
        write_report_files,
    )

    if fail_on_regression and baseline is None:
        raise click.UsageError("--fail-on-regression needs --baseline")
    bench_kw = {
        "data": data_path,
        "batch_sizes": batch_sizes,
        "threads": threads,
        "min_iters": min_iters,
        "min_seconds": min_seconds,
    }
    benches = load_inputs(inputs, memory=not no_memory, **bench_kw)
    if baseline is not None and confirm > 0:
        benches = remeasure_flagged(benches, load_bench_json(baseline), retries=confirm, **bench_kw)
    report = build_report(benches, title=title, baseline=baseline)
    paths = write_report_files(report, Path(out_dir))
    if not progress.STATE["json"]:
        print_summary(benches, console=console)
        console.print(format_summary(report), highlight=False)
    wrote = f"wrote {paths['html']}, {paths['md']}, {paths['json']} and the plots"
    progress.log_line(console)(wrote)
    report = json.loads(Path(paths["json"]).read_text())  # as written: with its plots
    if fail_on_regression and not report["regression"]["passed"]:
        raise ExitWith(report, exits.REGRESSION)  # the report is still printed with --json
    return report


@main.command()
@click.argument("artifact", type=click.Path(exists=True))
@click.option(
    "--trusted-key",
    "trusted_keys",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Public key (PEM or raw 32 bytes) the artifact must be signed by; repeatable.",
)
@json_output
def inspect(artifact: str, trusted_keys: tuple[str, ...]) -> dict:
    """Verify ARTIFACT (format, checksums, signature with --trusted-key), print its manifest."""
    from edgecomp.manifest import format_manifest, read_manifest
    from edgecomp_runtime import SignatureError
    from edgecomp_runtime.signing import signer_key_id

    manifest = read_manifest(artifact, trusted_keys=list(trusted_keys) or None)
    if progress.STATE["json"]:
        return manifest  # the raw manifest
    click.echo(format_manifest(manifest), nl=False)
    try:
        signer = signer_key_id(artifact)
    except SignatureError as exc:  # without --trusted-key a bad manifest.sig is only reported
        click.echo(f"signature   unreadable: {exc}")
        return manifest
    if signer is None:
        click.echo("signature   none")
    else:
        checked = "verified" if trusted_keys else "not verified: pass --trusted-key"
        click.echo(f"signature   ed25519 key {signer} ({checked})")
    return manifest


@main.command()
@json_output
def targets() -> list:
    """List target profiles, their backends, precisions, capabilities and availability."""
    from edgecomp.targets import get_target, list_profiles

    columns = ("target", "backend", "arch", "precisions", "capabilities", "available")
    table = Table(*columns, "description")
    rows = []
    for profile in list_profiles().values():
        cls = get_target(profile.backend)
        available = cls.is_available()
        ok = "yes" if available else f"no: {cls.missing_reason()}"
        row = (profile.name, profile.backend, profile.arch, ", ".join(profile.precisions))
        table.add_row(*row, cls.capabilities.describe(), ok, profile.description)
        rows.append({
            "name": profile.name, "backend": profile.backend, "arch": profile.arch,
            "precisions": list(profile.precisions), "capabilities": cls.capabilities.describe(),
            "available": available, "missing": None if available else cls.missing_reason(),
            "description": profile.description,
        })  # fmt: skip
    if not progress.STATE["json"]:
        console.print(table)
    return rows


# Commands that live beside their subsystem, as "module:attribute" of a click command or group.
# Each module must import only click and the standard library at top level (toolchains inside
# the command), so `edgecomp --help` stays fast.
COMMAND_MODULES: tuple[str, ...] = (
    "edgecomp.analyze_cli:analyze",
    "edgecomp.tune.cli:tune",
    "edgecomp.fl.cli:fl",
)


def _register_commands() -> None:
    import importlib

    for spec in COMMAND_MODULES:
        module_name, _, attr = spec.partition(":")
        main.add_command(getattr(importlib.import_module(module_name), attr))


_register_commands()
