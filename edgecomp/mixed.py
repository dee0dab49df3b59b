"""Error-budget-driven mixed precision: keep the most sensitive layers in float until it holds.

Greedy and measured: start with every layer quantized; while the budget fails on the analysis
split, move the most sensitive still-quantized layer (by ``analyze.Sensitivity``) to float and
compile again. Each step is a real compile for the target, so interactions between layers count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgecomp.analyze import Log, Measurement, Sensitivity, measure
from edgecomp.budget import Budget, parse_increase  # the one budget of every building command
from edgecomp.data import Dataset
from edgecomp.pipeline import BuildConfig, BuildError
from edgecomp.spec import Model

__all__ = ["Budget", "BudgetError", "MixedPlan", "plan_mixed", "parse_increase"]


class BudgetError(BuildError):
    """The budget cannot be met, even with every layer in float; the message says by how much."""


@dataclass(frozen=True)
class MixedPlan:
    """The outcome of the search.

    Attributes:
        budget: The budget searched for.
        kept_float: Layers kept in float, most sensitive first.
        steps: Every compile measured, in order.
        limits: Allowed MAE per horizon step.
        sensitivity: The analysis the order came from.
    """

    budget: Budget
    kept_float: list[str]
    steps: list[Measurement]
    limits: list[float]
    sensitivity: Sensitivity

    @property
    def final(self) -> Measurement:
        return self.steps[-1]

    def record(self) -> dict[str, Any]:
        """The plan as stored in the manifest (``recipe.mixed_precision``): budget, steps, the
        sensitivity table and, per layer, its final precision and why."""
        sens = self.sensitivity
        return {
            "base_precision": sens.precision,
            "budget": {**vars(self.budget), "text": self.budget.describe()},
            "split": sens.split,
            "float_mae": sens.float_mae,
            "limits": [v if v != float("inf") else None for v in self.limits],
            "final_mae": self.final.mae,
            "kept_float": self.kept_float,
            "steps": [
                {"kept_float": s.kept_float, "mae": s.mae, "size_bytes": s.size_bytes}
                for s in self.steps
            ],
            "sensitivity": sens.to_dict(),
            "layers": self.layer_notes(),
        }

    def layer_notes(self) -> dict[str, str]:
        """Layer -> why it ended in float or quantized."""
        sens, notes = self.sensitivity, {}
        checked = self.budget.steps(len(sens.float_mae))
        for name in sens.quantizable:
            increase = [sens.increase(name)[h] for h in checked]
            worst = max(range(len(checked)), key=increase.__getitem__)
            cost = f"{increase[worst] * 100:+.2f} % {sens.split} MAE at h{checked[worst] + 1}"
            notes[name] = (
                f"kept in float by the mixed-precision search ({self.budget.describe()}): "
                f"{sens.precision} alone costs {cost}"
                if name in self.kept_float
                else f"mixed precision: {sens.precision} within the budget "
                f"({self.budget.describe()}); alone it costs {cost}"
            )
        return notes


def plan_mixed(
    model: Model,
    dataset: Dataset,
    sensitivity: Sensitivity,
    budget: Budget,
    *,
    options: dict[str, Any] | None = None,
    calibration_windows: int = 256,
    log: Log | None = None,
) -> MixedPlan:
    """Keep the most sensitive layers in float until ``budget`` holds on the analysis split.

    Raises:
        BudgetError: Even with every layer the target quantizes left in float the budget fails
            (only an absolute budget below the float model's own error can).
    """
    sens, say = sensitivity, log or (lambda _: None)
    config = BuildConfig(
        target=sens.target,
        precision=sens.precision,
        calibration_windows=calibration_windows,
        eval_split=sens.split,
        options=dict(options or {}),
    )
    limits = budget.limits(sens.float_mae)
    order = _by_cost(sens, budget)
    kept: list[str] = []
    steps = []
    while True:
        step = measure(model, dataset, config, kept)
        steps.append(step)
        say(f"float {kept or '[]'}: worst {_worst(step.mae, limits)}")
        if _holds(step.mae, limits):
            return MixedPlan(budget, kept, steps, limits, sens)
        if len(kept) == len(order):
            raise BudgetError(_cannot(budget, step.mae, limits, sens))
        kept = [*kept, order[len(kept)]]


def _holds(mae: list[float], limits: list[float]) -> bool:
    # NOTE: 1e-6 relative slack: a graph left all-float may differ from the fp32 one by rounding
    return all(v <= lim * (1 + 1e-6) for v, lim in zip(mae, limits, strict=True))


def _by_cost(sens: Sensitivity, budget: Budget) -> list[str]:
    """Quantized layers, costliest first, at the horizon steps the budget checks."""
    checked = budget.steps(len(sens.float_mae))

    def cost(name: str) -> float:
        return max(sens.layer_mae[name][h] - sens.float_mae[h] for h in checked)

    return sorted(sens.quantizable, key=cost, reverse=True)


def _worst(mae: list[float], limits: list[float]) -> str:
    h = max(range(len(mae)), key=lambda i: mae[i] / limits[i])
    return f"h{h + 1} MAE {mae[h]:.4g} (limit {limits[h]:.4g})"


def _cannot(budget: Budget, mae: list[float], limits: list[float], sens: Sensitivity) -> str:
    return (
        f"cannot meet the budget ({budget.describe()}) on the {sens.split} split even with every "
        f"layer in float: {_worst(mae, limits)}; the float model itself is above the budget"
    )
