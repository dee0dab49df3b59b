"""The error budget every build keeps: parsing, per-step limits and the gate on the test split.

A budget bounds the artifact's MAE at each horizon step against the float reference (relative,
``--max-error-increase``, default 1 %) or in the targets' raw units (absolute, ``--max-error``).
Both can be given: then both must hold. ``--at-horizon N`` checks step N only;
``--no-error-limit`` switches the gate off. The gate reads the verification metrics, which are
computed on observed (never imputed) test values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from edgecomp import exits

__all__ = [
    "DEFAULT_MAX_INCREASE",
    "EXIT_BUDGET_NOT_MET",
    "Budget",
    "BudgetFlagError",
    "BudgetNotMet",
    "GateResult",
    "budget_from_flags",
    "budget_options",
    "gate",
    "parse_increase",
]

EXIT_BUDGET_NOT_MET = exits.BUDGET_NOT_MET  # every command whose build breaks its budget
DEFAULT_MAX_INCREASE = 0.01
_SLACK = 1e-6  # relative: a graph left all-float may differ from the reference by rounding


class BudgetFlagError(ValueError):
    """A budget flag cannot be used; the message names the flag."""


class BudgetNotMet(Exception):  # noqa: N818 - the name reads as the outcome it reports
    """No candidate met the budget: nothing was written. The message names the worst step, by
    how much it missed, and the closest candidates with their sizes.

    Attributes:
        trials: The record of every candidate tried (see ``edgecomp.ladder``).
    """

    def __init__(self, message: str, trials: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.trials = list(trials or [])


@dataclass(frozen=True)
class Budget:
    """How much error the artifact may add, per horizon step.

    Attributes:
        max_increase: Relative MAE increase allowed over the float reference (0.01 = 1 %).
        max_error: Absolute MAE allowed, in the targets' raw units.
        at_horizon: 1-based horizon step the budget applies to; None means every step.
    """

    max_increase: float | None = DEFAULT_MAX_INCREASE
    max_error: float | None = None
    at_horizon: int | None = None

    def __post_init__(self) -> None:
        if self.max_increase is None and self.max_error is None:
            raise BudgetFlagError(
                "a budget needs --max-error-increase or --max-error (or --no-error-limit)"
            )
        for flag, value in (
            ("--max-error-increase", self.max_increase),
            ("--max-error", self.max_error),
        ):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise BudgetFlagError(f"{flag} must be a finite number >= 0; got {value!r}")
        if self.at_horizon is not None and (
            isinstance(self.at_horizon, bool) or self.at_horizon < 1
        ):
            raise BudgetFlagError(f"--at-horizon counts from 1; got {self.at_horizon!r}")

    def steps(self, horizon: int) -> list[int]:
        """0-based horizon steps the budget checks.

        Raises:
            BudgetFlagError: ``at_horizon`` is beyond ``horizon``.
        """
        if self.at_horizon is None:
            return list(range(horizon))
        if self.at_horizon > horizon:
            raise BudgetFlagError(
                f"--at-horizon {self.at_horizon} is beyond the model's horizon ({horizon} steps)"
            )
        return [self.at_horizon - 1]

    def limits(self, reference_mae: list[float | None]) -> list[float]:
        """Allowed MAE per step (inf where the budget does not look, or nothing was scored)."""
        checked = set(self.steps(len(reference_mae)))
        out = []
        for h, ref in enumerate(reference_mae):
            allowed = [math.inf]
            if h in checked and ref is not None and self.max_increase is not None:
                allowed.append(ref * (1 + self.max_increase))
            if h in checked and self.max_error is not None:
                allowed.append(self.max_error)
            out.append(min(allowed))
        return out

    def describe(self) -> str:
        """E.g. "MAE +1 % at every horizon step"."""
        parts = []
        if self.max_increase is not None:
            parts.append(f"MAE +{self.max_increase * 100:g} %")
        if self.max_error is not None:
            parts.append(f"MAE <= {self.max_error:g} (raw units)")
        where = "every horizon step" if self.at_horizon is None else f"h{self.at_horizon}"
        return f"{' and '.join(parts)} at {where}"

    def record(self) -> dict[str, Any]:
        """The budget as the manifest stores it."""
        return {
            "max_increase": self.max_increase,
            "max_error": self.max_error,
            "at_horizon": self.at_horizon,
            "text": self.describe(),
        }


def parse_increase(text: str, flag: str = "--max-error-increase") -> float:
    """ "1%" or "0.01" -> 0.01.

    Raises:
        BudgetFlagError: Not a non-negative number or percentage (the message names ``flag``).
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(%?)\s*", str(text))
    if match is None:
        raise BudgetFlagError(
            f"{flag} must be a number >= 0 or a percentage such as 1%; got {text!r}"
        )
    value = float(match[1])
    return value / 100 if match[2] else value


def _parse_error(text: str | float) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise BudgetFlagError(
            f"--max-error must be a number >= 0 in the targets' units; got {text!r}"
        ) from None
    if not (math.isfinite(value) and value >= 0):
        raise BudgetFlagError(f"--max-error must be a finite number >= 0; got {text!r}")
    return value


def _parse_horizon(text: str | int) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise BudgetFlagError(f"--at-horizon must be a whole step number; got {text!r}") from None
    if value < 1:
        raise BudgetFlagError(f"--at-horizon counts from 1; got {text!r}")
    return value


def budget_from_flags(
    max_error_increase: str | None = None,
    max_error: str | float | None = None,
    at_horizon: str | int | None = None,
    no_error_limit: bool = False,
    *,
    horizon: int | None = None,
) -> Budget | None:
    """The budget the four flags describe; None for ``--no-error-limit``.

    Without ``--max-error-increase`` and ``--max-error`` the default relative budget (1 %)
    applies; ``--max-error`` alone replaces it; both given means both must hold.

    Raises:
        BudgetFlagError: A flag cannot be parsed, is negative, ``--at-horizon`` is beyond
            ``horizon``, or ``--no-error-limit`` is combined with a budget flag.
    """
    given = [
        flag
        for flag, value in (
            ("--max-error-increase", max_error_increase),
            ("--max-error", max_error),
            ("--at-horizon", at_horizon),
        )
        if value is not None
    ]
    if no_error_limit:
        if given:
            raise BudgetFlagError(f"--no-error-limit cannot be combined with {', '.join(given)}")
        return None
    error = None if max_error is None else _parse_error(max_error)
    if max_error_increase is not None:
        increase = parse_increase(max_error_increase)
    else:
        increase = DEFAULT_MAX_INCREASE if error is None else None
    step = None if at_horizon is None else _parse_horizon(at_horizon)
    budget = Budget(max_increase=increase, max_error=error, at_horizon=step)
    if horizon is not None:
        budget.steps(horizon)
    return budget


@dataclass(frozen=True)
class GateResult:
    """The budget checked on one set of verification metrics.

    Attributes:
        passed: Every checked step is within its limit.
        split: The split the metrics came from.
        reference: Float reference MAE per step (observed values).
        artifact: Artifact MAE per step (observed values).
        limits: Allowed MAE per step (inf where not checked).
        worst_step: 0-based step closest to (or furthest over) its limit.
    """

    passed: bool
    split: str
    reference: list[float]
    artifact: list[float]
    limits: list[float]
    worst_step: int

    @property
    def worst_change(self) -> float:
        """Relative MAE change against the reference at the worst step."""
        h = self.worst_step
        return self.artifact[h] / self.reference[h] - 1 if self.reference[h] else 0.0

    @property
    def excess(self) -> float:
        """How far the worst step is over its limit, relative to the limit (<= 0 when within)."""
        h = self.worst_step
        return self.artifact[h] / self.limits[h] - 1 if math.isfinite(self.limits[h]) else -1.0

    def changes(self) -> list[float]:
        """Relative MAE change per step."""
        return [a / r - 1 if r else 0.0 for a, r in zip(self.artifact, self.reference, strict=True)]

    def describe(self) -> str:
        """One line: the worst step, its change and its limit."""
        h = self.worst_step
        verdict = "within" if self.passed else f"misses by {self.excess * 100:.2f} % of"
        return (
            f"{self.split} h{h + 1}: MAE {self.artifact[h]:.4g} vs float {self.reference[h]:.4g} "
            f"({self.worst_change * 100:+.2f} %), {verdict} its limit {self.limits[h]:.4g}"
        )

    def record(self) -> dict[str, Any]:
        """JSON-safe record for the manifest."""
        return {
            "split": self.split,
            "passed": self.passed,
            "worst_step": self.worst_step + 1,
            "worst_change": self.worst_change,
            "change_per_step": self.changes(),
            "limits": [v if math.isfinite(v) else None for v in self.limits],
        }


def gate(metrics: dict[str, Any], budget: Budget) -> GateResult:
    """Check ``budget`` on verification metrics (``{"split", "reference", "artifact"}`` with
    per-step ``mae`` computed on observed values).

    Raises:
        BudgetFlagError: ``--at-horizon`` is beyond the horizon.
        ValueError: A checked step has no observed value to score (the message names it).
    """
    ref, art = metrics["reference"]["mae"], metrics["artifact"]["mae"]
    split = metrics.get("split", "test")
    checked = budget.steps(len(ref))
    empty = [h + 1 for h in checked if ref[h] is None or art[h] is None]
    if empty:
        raise ValueError(
            f"cannot gate the error budget: the {split} split has no observed value at "
            f"step(s) {', '.join(f'h{h}' for h in empty)} (every truth value there was imputed)"
        )
    limits = budget.limits(ref)
    art_f = [math.nan if v is None else v for v in art]
    ref_f = [math.nan if v is None else v for v in ref]
    worst = max(checked, key=lambda h: art_f[h] / limits[h])
    passed = all(art_f[h] <= limits[h] * (1 + _SLACK) for h in checked)
    return GateResult(passed, split, ref_f, art_f, limits, worst)


def budget_options(fn: Any) -> Any:
    """Click decorator: the error-budget flags of every command that builds. The command gets
    ``max_error_increase``, ``max_error``, ``at_horizon`` and ``no_error_limit``; pass them to
    ``budget_from_flags``. (Re-exported by ``edgecomp.cli``; it lives here so that command
    modules can import it without importing the CLI.)"""
    import click

    opts = [
        click.option(
            "--max-error-increase",
            help="Error budget: relative MAE increase over the float model allowed at each "
            "horizon step, e.g. 1% or 0.01 [default: 1%, unless --max-error is given].",
        ),
        click.option(
            "--max-error",
            help="Error budget: absolute MAE allowed at each horizon step, in the targets' units "
            "(with --max-error-increase both must hold).",
        ),
        click.option("--at-horizon", help="Check the error budget at this step (1-based) only."),
        click.option(
            "--no-error-limit",
            is_flag=True,
            help="Write the artifact whatever its error (no budget, no fallback ladder).",
        ),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn
