"""Measure one recipe: run its passes, build, verify on validation windows, time the runtime.

Error is measured on the validation split's observed values (the test split stays untouched
until the chosen recipe is built, then gates it), against the input model in fp32 at every
horizon step. The limits mean what the error-budget flags of every building command mean
(``edgecomp.budget``). Latency and memory are
measured through ``edgecomp_runtime`` on this host, like `edgecomp bench`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecomp.data import Dataset
from edgecomp.spec import Model

__all__ = ["Constraints", "Evaluator", "TuneError"]


class TuneError(ValueError):
    """Tuning cannot go on, or found nothing that meets the constraints."""


@dataclass(frozen=True)
class Constraints:
    """Limits a recipe must meet; None leaves a quantity free.

    Attributes:
        max_error_increase: Relative MAE increase over the input fp32 model, at every horizon
            step (0.01 = 1 %), or at ``horizon`` only (``--max-error-increase``).
        max_error_abs: Absolute MAE allowed in the targets' raw units, same steps
            (``--max-error``).
        horizon: 1-based horizon step the error limits apply to (None: every step).
        max_p99_ms: p99 latency of one raw window through the runtime, in ms.
        max_size_kb: Artifact file size in KiB.
        max_memory_mb: Peak resident memory of a fresh runtime process that loads and predicts.
    """

    max_error_increase: float | None = None
    max_error_abs: float | None = None
    horizon: int | None = None
    max_p99_ms: float | None = None
    max_size_kb: float | None = None
    max_memory_mb: float | None = None

    def violations(self, measured: dict[str, Any]) -> dict[str, float]:
        """Each set limit's excess, normalized by the limit (<= 0 means it holds)."""
        pairs = {
            "error_increase": (measured["error_increase"], self.max_error_increase),
            "error_abs": (measured["error_abs"], self.max_error_abs),
            "p99_ms": (measured["p99_ms"], self.max_p99_ms),
            "size_kb": (measured["size_bytes"] / 1024, self.max_size_kb),
            "memory_mb": (measured.get("peak_rss_mb"), self.max_memory_mb),
        }
        return {
            name: (value - limit) / max(abs(limit), 1e-9)
            for name, (value, limit) in pairs.items()
            if limit is not None and value is not None
        }

    def describe(self) -> str:
        """The set limits as one line, e.g. 'error +1.0 % at every step, p99 <= 2 ms'."""
        where = f"at step h{self.horizon}" if self.horizon else "at every step"
        parts = []
        if self.max_error_increase is not None:
            parts.append(f"MAE +{self.max_error_increase * 100:g} % {where}")
        if self.max_error_abs is not None:
            parts.append(f"MAE <= {self.max_error_abs:g} raw units {where}")
        for name, unit, value in (
            ("p99", "ms", self.max_p99_ms),
            ("size", "KiB", self.max_size_kb),
            ("memory", "MB", self.max_memory_mb),
        ):
            if value is not None:
                parts.append(f"{name} <= {value:g} {unit}")
        return ", ".join(parts) or "none"

    @classmethod
    def from_budget(cls, budget: Any, **limits: float | None) -> Constraints:
        """The error limits of an ``edgecomp.budget.Budget`` (None: no error limit) plus
        ``limits`` (max_p99_ms, max_size_kb, max_memory_mb)."""
        if budget is None:
            return cls(**limits)
        return cls(budget.max_increase, budget.max_error, budget.at_horizon, **limits)

    def budget(self) -> Any:
        """The error limits as an ``edgecomp.budget.Budget``; None when there are none."""
        from edgecomp.budget import Budget

        if self.max_error_increase is None and self.max_error_abs is None:
            return None
        return Budget(self.max_error_increase, self.max_error_abs, self.horizon)


@dataclass
class Evaluator:
    """Builds and measures recipes for one model and dataset; caches pass results in-process.

    Attributes:
        model: The input model (the fp32 reference).
        dataset: Its data; error on ``val``.
        workdir: Where trial artifacts are written (one file per canonical recipe).
        constraints: The limits (memory is measured only when limited).
        latency_iters: Timed runtime calls per trial (at least).
    """

    model: Model
    dataset: Dataset
    workdir: Path
    constraints: Constraints
    latency_iters: int = 300
    _reference: list[float | None] = field(default_factory=list, init=False)
    _cache: dict[str, tuple[Model, list]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        from edgecomp.workflow import evaluate

        self.workdir.mkdir(parents=True, exist_ok=True)
        mae = evaluate(self.model, self.dataset, "val")["model"]["mae"]
        self._reference = [None if v is None else float(v) for v in mae]

    @property
    def reference_mae(self) -> list[float | None]:
        """Per-step validation MAE of the input model in fp32 (raw units)."""
        return list(self._reference)

    def __call__(self, recipe: dict[str, Any], name: str) -> dict[str, Any]:
        """Build ``recipe`` as ``workdir/name.edgepkg`` and return what it measured."""
        from edgecomp.passes.recipe import parse_recipe
        from edgecomp.pipeline import build

        model, records = self._passes(parse_recipe({**recipe, "lower": []}, source=name))
        recipe, mixed = self._resolve_mixed(recipe, model)
        (_, config) = parse_recipe(recipe, source=f"trial {name}").build_configs()[0]
        path = self.workdir / f"{name}.edgepkg"
        result = build(model, self.dataset, config, path, passes=records, mixed=mixed)
        measured = self._error(result.manifest["metrics"]["artifact"]["mae"])
        measured.update(self._speed(path))
        measured["params"] = records[-1]["measured"]["after"]["params"] if records else None
        measured["artifact"] = str(path)
        measured["recipe"] = recipe  # as built: a mixed recipe names its float layers
        return measured

    def _resolve_mixed(self, recipe: dict[str, Any], model: Model) -> tuple[dict, dict | None]:
        """For precision "mixed-<p>": keep the most sensitive layers of ``model`` in float
        until the relative error limit holds (edgecomp.mixed) and name them in the recipe."""
        lower = recipe["lower"][0]
        if not lower["precision"].startswith("mixed-"):
            return recipe, None
        from edgecomp.analyze import analyze
        from edgecomp.mixed import plan_mixed

        base = lower["precision"].removeprefix("mixed-")
        options = dict(lower.get("options", {}))
        kw = {"options": options, "calibration_windows": lower.get("calibration_windows", 256)}
        sens = analyze(model, self.dataset, target=lower["target"], precision=base, **kw)
        plan = plan_mixed(model, self.dataset, sens, self.constraints.budget(), **kw)
        options = plan.options({k: v for k, v in options.items() if k != "keep_float"})
        lower = {**lower, "precision": base, "options": options}
        return {**recipe, "lower": [lower]}, plan.record()

    def _passes(self, parsed: Any) -> tuple[Model, list]:
        from edgecomp.passes import PassContext, run_passes

        key = json.dumps(parsed.passes, sort_keys=True)
        if key not in self._cache:
            ctx = PassContext(self.dataset, eval_split="val")
            self._cache[key] = run_passes(self.model, parsed.make_passes(), ctx)
        return self._cache[key]

    def _error(self, mae: list[float | None]) -> dict[str, Any]:
        """Worst relative increase and worst absolute MAE over the checked steps that scored
        observed values (a step without any has None and is not counted)."""
        steps = range(len(mae))
        if self.constraints.horizon is not None:
            steps = [self.constraints.horizon - 1]
        ref = self._reference
        steps = [i for i in steps if mae[i] is not None and ref[i] is not None]
        if not steps:
            raise TuneError("the validation split has no observed value at the checked steps")
        rel = [mae[i] / ref[i] - 1 if ref[i] > 0 else 0.0 for i in steps]
        return {
            "mae": [None if v is None else float(v) for v in mae],
            "error_increase": max(rel),
            "error_abs": max(mae[i] for i in steps),
        }

    def _speed(self, path: Path) -> dict[str, Any]:
        from edgecomp.bench.runner import bench_artifact

        report = bench_artifact(
            path,
            batch_sizes=(1,),
            min_iters=self.latency_iters,
            min_seconds=0.2,
            warmup=20,
            memory=self.constraints.max_memory_mb is not None,
        )
        memory = report["memory"] or {}
        p99 = report["latency"]["b1"]["p99_ms"]
        if not math.isfinite(p99):
            raise TuneError(f"{path}: non-finite latency")
        return {
            "p50_ms": report["latency"]["b1"]["p50_ms"],
            "p99_ms": p99,
            "size_bytes": path.stat().st_size,
            "peak_rss_mb": memory.get("peak_rss_mb"),
        }
