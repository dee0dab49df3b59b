"""Error-budget-driven mixed precision: keep the most sensitive layers in int8, then in float,
until the budget holds.

Greedy and measured: start with every layer quantized; while the budget fails on the analysis
split, move the most sensitive layer (by ``analyze.Sensitivity``) one step up and compile again.
In an int4 build a layer first goes int4 -> int8 (option ``keep_int8``: the target's own int8
for that layer), most sensitive first; only when every layer is int8 and the budget still fails
does a layer go to float, most sensitive first (a target that refuses ``keep_int8`` gets the
float steps alone). Other precisions go straight to float. Each step is a real compile for the
target, so interactions between layers count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgecomp.analyze import Log, Measurement, Sensitivity, measure
from edgecomp.budget import Budget, parse_increase  # the one budget of every building command
from edgecomp.data import Dataset
from edgecomp.pipeline import BuildConfig, BuildError
from edgecomp.spec import Model

__all__ = [
    "Budget",
    "BudgetError",
    "MixedPlan",
    "describe_record",
    "plan_mixed",
    "parse_increase",
]


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
        kept_int8: Layers of an int4 build quantized as int8 instead, most sensitive first.
        int8_refused: Why the int8 step was not taken although the build is int4 (the target
            refused option ``keep_int8``), else "".
    """

    budget: Budget
    kept_float: list[str]
    steps: list[Measurement]
    limits: list[float]
    sensitivity: Sensitivity
    kept_int8: list[str] = field(default_factory=list)
    int8_refused: str = ""

    @property
    def final(self) -> Measurement:
        return self.steps[-1]

    def precisions(self) -> dict[str, str]:
        """Layer -> its final precision: the base one ("int4"), "int8" or "float"; an int8 layer
        the target computes in float (an x86 GRU: int8 weights expanded at load) says so."""
        measured = self.final.precisions
        out = {}
        for name in self.sensitivity.quantizable:
            if name in self.kept_float:
                out[name] = "float"
            elif name in self.kept_int8:
                computed = measured.get(name, "int8")
                out[name] = "int8" if computed == "int8" else f"int8 weights, {computed} compute"
            else:
                out[name] = self.sensitivity.precision
        return out

    def options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Build options ``options`` with the plan's layers added to ``keep_float`` and (int4)
        ``keep_int8``: what compiles the planned artifact."""
        out = {**options, "keep_float": [*options.get("keep_float", ()), *self.kept_float]}
        if self.kept_int8:
            out["keep_int8"] = [*options.get("keep_int8", ()), *self.kept_int8]
        return out

    def describe(self) -> str:
        """The plan in words, as the ladder logs it: which layers went int8, which float."""
        return describe_record({"kept_int8": self.kept_int8, "kept_float": self.kept_float})

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
            "kept_int8": self.kept_int8,
            "precisions": self.precisions(),
            **({"int8_refused": self.int8_refused} if self.int8_refused else {}),
            "steps": [
                {
                    "kept_float": s.kept_float,
                    "kept_int8": s.kept_int8,
                    "mae": s.mae,
                    "size_bytes": s.size_bytes,
                }
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
            kept = "float" if name in self.kept_float else "int8" if name in self.kept_int8 else ""
            notes[name] = (
                f"kept in {kept} by the mixed-precision search ({self.budget.describe()}): "
                f"{sens.precision} alone costs {cost}"
                if kept
                else f"mixed precision: {sens.precision} within the budget "
                f"({self.budget.describe()}); alone it costs {cost}"
            )
        return notes


def describe_record(record: dict[str, Any]) -> str:
    """A plan record (``MixedPlan.record``) in words: "keep ['head'] in int8, no layer in ..."."""
    kept_int8, kept_float = record.get("kept_int8") or [], record.get("kept_float") or []
    parts = [f"{kept_int8} in int8"] if kept_int8 else []
    if kept_float or not parts:
        parts.append(f"{kept_float or 'no layer'} in float")
    return "keep " + ", ".join(parts)


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
    """Keep the most sensitive layers in int8 (int4 builds), then in float, until ``budget``
    holds on the analysis split.

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
    int8: list[str] = []
    steps: list[Measurement] = []
    refused = "" if sens.precision == "int4" else "not an int4 build"
    while True:
        try:
            step = _checked(measure(model, dataset, config, kept, int8), sens.precision)
        except ValueError as exc:  # TargetError: the target cannot keep layers in int8
            if not int8 or any(s.kept_int8 for s in steps):
                raise
            refused, int8 = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}", []
            say(f"int8 step refused by the target ({refused}): float only")
            following = _next_step(order, kept, int8, int8_step=False)
            if following is None:  # cannot happen: the step before had a layer at int4
                raise
            kept, int8 = following
            continue
        steps.append(step)
        say(f"int8 {int8 or '[]'}, float {kept or '[]'}: worst {_worst(step.mae, limits)}")
        if _holds(step.mae, limits):
            note = refused if sens.precision == "int4" else ""
            return MixedPlan(budget, kept, steps, limits, sens, int8, note)
        following = _next_step(order, kept, int8, int8_step=not refused)
        if following is None:
            raise BudgetError(_cannot(budget, step.mae, limits, sens))
        kept, int8 = following


def _checked(step: Measurement, precision: str) -> Measurement:
    """``step``, unless a layer asked for in int8 stayed at ``precision``: a target that ignores
    option ``keep_int8`` would make every int8 step a repeat of the one before.

    Raises:
        BuildError: Naming the layers the target left at ``precision``.
    """
    ignored = [name for name in step.kept_int8 if step.precisions.get(name) == precision]
    if ignored:
        raise BuildError(f"the target ignored option keep_int8: {ignored} stayed {precision}")
    return step


def _next_step(
    order: list[str], kept: list[str], int8: list[str], *, int8_step: bool
) -> tuple[list[str], list[str]] | None:
    """(float, int8) layers after one more greedy step, or None when every layer is float: the
    most sensitive layer still at the base precision goes int8 (``int8_step``); when none is
    left, the most sensitive int8 layer goes float (without ``int8_step``: the base one)."""
    base = [n for n in order if n not in kept and n not in int8]
    if int8_step and base:
        return kept, [*int8, base[0]]
    upgraded = [n for n in order if n in int8]
    if upgraded:
        return [*kept, upgraded[0]], [n for n in int8 if n != upgraded[0]]
    if base:
        return [*kept, base[0]], int8
    return None


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
