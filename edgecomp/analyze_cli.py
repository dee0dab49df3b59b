"""`edgecomp analyze`: per-layer sensitivity by horizon, and error-budget mixed precision.

Imports only click and the standard library at top level (see COMMAND_MODULES in edgecomp/cli.py).
"""

from __future__ import annotations

from pathlib import Path

import click

from edgecomp.budget import budget_options
from edgecomp.cliopts import json_output, renamed
from edgecomp.dataflags import read_flags
from edgecomp.tracking import TrackedCommand


@click.command("analyze", cls=TrackedCommand)
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
@click.option(
    "--on-split",
    type=click.Choice(["train", "val", "test"]),
    default="val",
    show_default=True,
    help="Which split's windows the analysis uses.",
)
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
@budget_options
@click.option(
    "--out",
    "-o",
    type=click.Path(),
    help="Artifact to write (.edgepkg): the mixed-precision build (budget: 1 % unless given), "
    "gated on the test split.",
)
@renamed("--split", to="--on-split", type=click.Choice(["train", "val", "test"]))
@json_output
def analyze(
    source: str,
    data_path: str,
    target: str,
    precision: str,
    on_split: str,
    spec_path: str | None,
    weights: str | None,
    options: tuple[str, ...],
    calibration_windows: int,
    out_dir: str,
    max_error_increase: str | None,
    max_error: str | None,
    at_horizon: str | None,
    no_error_limit: bool,
    out: str | None,
) -> dict:
    """Quantize each layer of SOURCE alone for a target; show the per-horizon cost.

    With a budget (--max-error-increase or --max-error, optionally --at-horizon) it also keeps the
    most sensitive layers in float until the budget holds on --on-split, and with --out builds that
    artifact: written only when it also holds on the test split's observed values and is smaller
    than the float artifact (else exit code 3, nothing written).
    """
    import torch

    from edgecomp import progress
    from edgecomp.analyze import analyze as run_analysis
    from edgecomp.cli import _parse_pairs, console

    torch.set_num_threads(1)
    flags = (max_error_increase, max_error, at_horizon, no_error_limit)
    budget = _budget(*flags, building=out is not None)  # bad budget: fail before any work
    model, dataset = _load(source, data_path, spec_path, weights)
    if budget is not None:
        budget.steps(model.spec.horizon)  # --at-horizon beyond the horizon: refused before work
    kw = {"options": _parse_pairs(options, "--option"), "calibration_windows": calibration_windows}
    quiet = progress.log_line(console)
    with progress.bar(f"analyzing {Path(source).name} per layer") as bar:

        def log(line: str) -> None:
            quiet(line)
            bar(line.strip()[:60])

        sens = run_analysis(
            model, dataset, target=target, precision=precision, split=on_split, log=log, **kw
        )
        _write_analysis(sens, Path(out_dir), console)
        document = {"sensitivity": str(Path(out_dir) / "sensitivity.json"), "plan": None}
        document["layers"] = _read_json(Path(out_dir) / "sensitivity.json")
        if budget is None:
            return document
        from edgecomp.mixed import plan_mixed

        plan = plan_mixed(model, dataset, sens, budget, log=log, **kw)
        _write_plan(plan, Path(out_dir), console)
        document["plan"] = plan.record()
        if out is not None:
            document["artifact"] = _build_mixed(model, dataset, plan, kw, out, console)
    return document


def _read_json(path: Path):
    import json

    return json.loads(path.read_text())


def _budget(increase, error, at_horizon, no_limit: bool, *, building: bool):
    """The budget, or None for a sensitivity analysis only."""
    from edgecomp.budget import budget_from_flags

    if no_limit and building:
        raise click.UsageError(
            "--out builds a mixed plan, which needs a budget: drop --no-error-limit"
        )
    if not building and increase is None and error is None:
        if at_horizon is not None:
            raise click.UsageError("--at-horizon needs --max-error-increase or --max-error")
        return None
    return budget_from_flags(increase, error, at_horizon, no_limit)


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
        f"budget {plan.budget.describe()} holds with {plan.describe().removeprefix('keep ')}: "
        f"{plan.sensitivity.split} MAE {[round(v, 4) for v in final.mae]}, "
        f"{final.size_bytes:,} B"
    )
    if set(plan.kept_float) == set(plan.sensitivity.quantizable):
        precision = plan.sensitivity.precision
        console.print(f"every layer is kept in float: the budget leaves no room for {precision}")
    atomic_write_text(out_dir / "mixed.json", json.dumps(plan.record(), indent=2))


def _build_mixed(model, dataset, plan, kw: dict, out: str, console) -> None:
    from edgecomp.budget import BudgetNotMet
    from edgecomp.ladder import build_within_budget
    from edgecomp.metrics import relative_change
    from edgecomp.pipeline import BuildConfig

    sens = plan.sensitivity
    if set(plan.kept_float) >= set(sens.quantizable):
        raise BudgetNotMet(
            f"the budget ({plan.budget.describe()}) keeps every layer in float: the mixed plan "
            f"would be the float artifact, so it is not emitted; build with --precision fp32. "
            f"Nothing was written."
        )
    options = plan.options(kw["options"])
    config = BuildConfig(sens.target, sens.precision, kw["calibration_windows"], options=options)
    result = build_within_budget(
        model, dataset, config, out, budget=plan.budget, mixed=plan.record(), rungs=()
    )
    metrics = result.manifest["metrics"]
    increase = relative_change(metrics["artifact"]["mae"], metrics["reference"]["mae"])
    console.print(
        f"wrote {result.path} ({result.path.stat().st_size:,} B): mixed {sens.precision}, "
        f"{metrics['split']} MAE vs reference per step "
        f"{['n/a' if v is None else f'{v * 100:+.2f}%' for v in increase]}"
    )
    return {"path": str(result.path), "mae_increase": increase, "split": metrics["split"]}
