"""The tuning run: search the space, write the results, build the chosen recipe.

``tune`` measures each recipe of the search space (passes, then one lowering) on validation
windows and through the runtime on this host, keeps every trial in an optuna study, and writes:
``results.json`` (every distinct recipe), ``pareto.md`` and ``pareto.png`` (the front),
``recipe.toml`` (the chosen recipe, for `edgecomp build --recipe`) and the chosen artifact, built
again and verified on the test split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgecomp._io import atomic_write_text
from edgecomp.data import Dataset
from edgecomp.spec import Model
from edgecomp.tune.evaluate import Constraints, Evaluator, TuneError
from edgecomp.tune.output import (
    choose,
    failed_trials,
    pareto_rows,
    plot_front,
    results_json,
    to_toml,
    trial_rows,
)
from edgecomp.tune.space import SpaceError, default_space, load_space
from edgecomp.tune.study import OBJECTIVES, STRATEGIES, TuneConfig, run_study

__all__ = [
    "Constraints",
    "STRATEGIES",
    "SpaceError",
    "TuneConfig",
    "TuneError",
    "TuneResult",
    "tune",
]


@dataclass(frozen=True)
class TuneResult:
    """What a tuning run found.

    Attributes:
        rows: Every distinct recipe measured (see ``edgecomp.tune.output.trial_rows``).
        chosen: The chosen row, or None when nothing met the constraints (``error`` says why).
        artifact: The chosen artifact, built and verified on the test split (None if not built).
        interrupted: True when Ctrl-C stopped the search (the study is kept).
        error: Why nothing was chosen (lists the closest recipes).
        failed: The trials that failed: trial number, recipe summary, error.
    """

    rows: list[dict[str, Any]]
    chosen: dict[str, Any] | None
    artifact: Path | None
    interrupted: bool
    error: str | None = None
    failed: list[dict[str, Any]] = field(default_factory=list)


def tune(
    model: Model,
    dataset: Dataset,
    config: TuneConfig,
    constraints: Constraints,
    out_dir: str | Path,
    *,
    space_file: str | Path | None = None,
    students: bool = True,
    build_chosen: bool = True,
    on_trial: Callable[[int, dict[str, Any] | None], None] | None = None,
) -> TuneResult:
    """Search recipes for ``model`` on ``config.target`` and write the results to ``out_dir``.

    Raises:
        TuneError, SpaceError: Bad configuration or space file; the message says which.
    """
    from edgecomp.targets import get_profile, get_target

    out = Path(out_dir)
    profile = get_profile(config.target)
    space = default_space(
        profile,
        students=students,
        mixed=constraints.max_error_increase is not None,
        model_type=type(model.module),
    )
    if space_file is not None:
        space = load_space(space_file, space)
    evaluator = Evaluator(model, dataset, out / "trials", constraints)
    needs = get_target(profile.backend).needs_calibration
    study, interrupted = run_study(
        config, space, evaluator, needs_calibration=needs, on_trial=on_trial
    )
    rows, failed = trial_rows(study), failed_trials(study)
    chosen, error = None, None
    try:
        chosen = choose(rows, OBJECTIVES[config.objective])
    except TuneError as exc:
        error = str(exc)
    _write(out, rows, chosen, config, constraints, evaluator, space, failed)
    artifact = None
    if chosen is not None and build_chosen and not interrupted:
        recipe = chosen["measured"]["recipe"]
        artifact = _build_chosen(model, dataset, recipe, out, constraints.budget())
    return TuneResult(rows, chosen, artifact, interrupted, error, failed)


def _write(
    out: Path,
    rows: list[dict[str, Any]],
    chosen: dict[str, Any] | None,
    config: TuneConfig,
    constraints: Constraints,
    evaluator: Evaluator,
    space: dict[str, tuple],
    failed: list[dict[str, Any]],
) -> None:
    results_json(
        out / "results.json",
        rows,
        {
            "config": asdict(config),
            "constraints": asdict(constraints),
            "space": {k: list(v) for k, v in space.items()},
            "reference_val_mae": evaluator.reference_mae,
            "chosen": None if chosen is None else chosen["trial"],
            "failed": failed,
        },
    )
    atomic_write_text(out / "pareto.md", pareto_markdown(rows, constraints))
    if rows:
        plot_front(out / "pareto.png", rows, constraints.max_error_increase)
    if chosen is not None:
        comment = (
            f"Chosen by edgecomp tune ({config.strategy}, study '{config.study_name}', "
            f"trial {chosen['trial']}) under: {constraints.describe()}\n"
            f"Measured on the validation split: {chosen['summary']}"
        )
        recipe = {**chosen["measured"]["recipe"], "eval_split": "test"}
        atomic_write_text(out / "recipe.toml", to_toml(recipe, comment))


def pareto_markdown(rows: list[dict[str, Any]], constraints: Constraints) -> str:
    """The Pareto front as a Markdown table (feasible rows marked)."""
    lines = [
        f"Constraints: {constraints.describe()}",
        "",
        "| trial | recipe | MAE increase (worst step) | p50 ms | p99 ms | size KiB | meets limits "
        "|",
        "|---:|---|---:|---:|---:|---:|:---:|",
    ]
    for r in pareto_rows(rows):
        m = r["measured"]
        lines.append(
            f"| {r['trial']} | {r['summary']} | {100 * m['error_increase']:+.2f} % | "
            f"{m['p50_ms']:.3f} | {m['p99_ms']:.3f} | {m['size_bytes'] / 1024:.1f} | "
            f"{'yes' if r['feasible'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def _build_chosen(
    model: Model, dataset: Dataset, recipe: dict[str, Any], out: Path, budget: Any
) -> Path:
    """The chosen recipe's artifact, gated by the error limits on the test split (the ladder
    runs on a breach; ``edgecomp.budget.BudgetNotMet`` when nothing meets them)."""
    from edgecomp.passes.recipe import parse_recipe
    from edgecomp.workflow import build_recipe

    parsed = parse_recipe({**recipe, "eval_split": "test"}, source=str(out / "recipe.toml"))
    stem, _ = parsed.build_configs()[0]
    return build_recipe(model, dataset, parsed, out / f"{stem}.edgepkg", budget=budget)[0].path
