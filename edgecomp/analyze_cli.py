"""`edgecomp analyze`: per-layer sensitivity by horizon, and error-budget mixed precision.

Imports only click and the standard library at top level (see COMMAND_MODULES in edgecomp/cli.py).
"""

from __future__ import annotations

from pathlib import Path

import click

from edgecomp.dataflags import read_flags


@click.command("analyze")
@click.argument("source")
@click.option(
    "--data",
    "data_path",
    type=click.Path(exists=True, dir_okay=False),
    required=True,
    help="The data the model was trained on (its spec says how to window it).",
)
@read_flags
@click.option("--target", "-t", default="x86-64-avx2", show_default=True, help="Target profile.")
@click.option(
    "--precision", "-p", default="int4", show_default=True, help="Scheme each layer gets."
)
@click.option("--split", default="val", show_default=True, help="Windows the analysis uses.")
@click.option("--spec", "spec_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--weights", type=click.Path(exists=True, dir_okay=False))
@click.option("--option", "options", multiple=True, help="Profile lowering option KEY=VALUE.")
@click.option("--calibration-windows", default=256, show_default=True)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False),
    default="analysis",
    show_default=True,
    help="Folder for sensitivity.json, sensitivity.png (and mixed.json).",
)
@click.option("--max-error-increase", help="Budget: relative MAE increase, e.g. 1% or 0.01.")
@click.option("--max-error", type=float, help="Budget: absolute MAE in raw units.")
@click.option("--at-horizon", type=int, help="Apply the budget at this step (1-based) only.")
@click.option(
    "--out", "-o", type=click.Path(dir_okay=False), help="Build the mixed-precision artifact."
)
def analyze(
    source: str,
    data_path: str,
    target: str,
    precision: str,
    split: str,
    spec_path: str | None,
    weights: str | None,
    options: tuple[str, ...],
    calibration_windows: int,
    out_dir: str,
    max_error_increase: str | None,
    max_error: float | None,
    at_horizon: int | None,
    out: str | None,
) -> None:
    """Quantize each layer of SOURCE alone for a target; show the per-horizon cost.

    With a budget (--max-error-increase or --max-error, optionally --at-horizon) it also keeps the
    most sensitive layers in float until the budget holds, and with --out builds that artifact.
    """
    import torch

    from edgecomp.analyze import analyze as run_analysis
    from edgecomp.cli import _parse_pairs, console

    torch.set_num_threads(1)
    budget = _budget(max_error_increase, max_error, at_horizon)  # bad budget: fail before work
    model, dataset = _load(source, data_path, spec_path, weights)
    kw = {"options": _parse_pairs(options, "--option"), "calibration_windows": calibration_windows}
    log = lambda line: console.print(line, highlight=False)  # noqa: E731
    sens = run_analysis(
        model, dataset, target=target, precision=precision, split=split, log=log, **kw
    )
    _write_analysis(sens, Path(out_dir), console)
    if budget is None:
        if out is not None:
            raise click.UsageError("--out needs a budget: --max-error-increase or --max-error")
        return
    from edgecomp.mixed import plan_mixed

    plan = plan_mixed(model, dataset, sens, budget, log=log, **kw)
    _write_plan(plan, Path(out_dir), console)
    if out is not None:
        _build_mixed(model, dataset, plan, kw, out, console)


def _budget(increase: str | None, error: float | None, at_horizon: int | None):
    from edgecomp.mixed import Budget, parse_increase

    if increase is None and error is None:
        if at_horizon is not None:
            raise click.UsageError("--at-horizon needs --max-error-increase or --max-error")
        return None
    value = None if increase is None else parse_increase(increase)
    return Budget(max_increase=value, max_error=error, at_horizon=at_horizon)


def _load(source: str, data: str, spec_path: str | None, weights: str | None):
    from edgecomp.frontend import load_model
    from edgecomp.spec import ModelSpec
    from edgecomp.workflow import dataset_for

    spec = None if spec_path is None else ModelSpec.load(spec_path)
    model = load_model(source, weights=weights, spec=spec)
    return model, dataset_for(model.spec, data)


def _write_analysis(sens, out_dir: Path, console) -> None:
    from rich.table import Table

    from edgecomp.analyze import heatmap_png, sensitivity_table

    columns, rows = sensitivity_table(sens)
    table = Table(title=f"{sens.precision} per layer on {sens.target}: {sens.split} MAE increase")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i < 2 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    sens.write(out_dir / "sensitivity.json")
    heatmap_png(sens, out_dir / "sensitivity.png")
    console.print(f"wrote {out_dir / 'sensitivity.json'} and {out_dir / 'sensitivity.png'}")


def _write_plan(plan, out_dir: Path, console) -> None:
    import json

    from edgecomp._io import atomic_write_text

    final = plan.final
    console.print(
        f"budget {plan.budget.describe()} holds with {plan.kept_float or 'no layer'} in float: "
        f"{plan.sensitivity.split} MAE {[round(v, 4) for v in final.mae]}, "
        f"{final.size_bytes:,} B"
    )
    if set(plan.kept_float) == set(plan.sensitivity.quantizable):
        precision = plan.sensitivity.precision
        console.print(f"every layer is kept in float: the budget leaves no room for {precision}")
    atomic_write_text(out_dir / "mixed.json", json.dumps(plan.record(), indent=2))


def _build_mixed(model, dataset, plan, kw: dict, out: str, console) -> None:
    from edgecomp.analyze import relative_increase
    from edgecomp.pipeline import BuildConfig, build

    sens = plan.sensitivity
    options = {**kw["options"]}
    options["keep_float"] = [*options.get("keep_float", ()), *plan.kept_float]
    config = BuildConfig(sens.target, sens.precision, kw["calibration_windows"], options=options)
    result = build(model, dataset, config, out, mixed=plan.record())
    metrics = result.manifest["metrics"]
    increase = relative_increase(metrics["artifact"]["mae"], metrics["reference"]["mae"])
    console.print(
        f"wrote {result.path} ({result.path.stat().st_size:,} B): mixed {sens.precision}, "
        f"{metrics['split']} MAE vs reference per step "
        f"{[f'{v * 100:+.2f}%' for v in increase]}"
    )
