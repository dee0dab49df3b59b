"""Distillation pass: train a smaller registered student to match the truth and the teacher.

``Teacher(x) -> Student(x)``: the input model is the teacher; the student (any registered
architecture, e.g. LSTM-64x2 -> GRU-32) trains on the training split with the batch loss
``alpha * loss(student, truth) + (1 - alpha) * MSE(student, teacher)``, optionally weighted per
horizon step, and early-stops on the truth of the validation split (``train_module``'s
``objective`` hook). With ``compare_scratch`` the same student, from the same initial weights and
shuffling, is also trained on the truth alone, and the pass reports all three per horizon step.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from edgecomp.frontend import reference_predict
from edgecomp.models import build_model, resolve_hparams
from edgecomp.passes.base import Pass, PassContext, PassResult, measure
from edgecomp.passes.finetune import FinetuneConfig, distill_objective, train_config
from edgecomp.spec import Model
from edgecomp.train import train_module

__all__ = ["DistillConfig", "DistillPass", "student_model"]


@dataclass(frozen=True)
class DistillConfig(FinetuneConfig):
    """Distillation; the training fields (and ``alpha``, ``horizon_weights``) are those of
    ``FinetuneConfig``, with defaults for training a student from scratch.

    Attributes:
        student: Registered architecture of the student ("lstm", "gru", "tcn").
        hparams: Student hyperparameters, over that architecture's defaults.
        compare_scratch: Also train the same student without a teacher and report both.
    """

    epochs: int = 40
    lr: float = 2e-3
    patience: int = 6
    alpha: float = 0.5
    student: str = "gru"
    hparams: dict[str, Any] = field(default_factory=dict)
    compare_scratch: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        resolve_hparams(self.student, self.hparams)  # names an unknown arch or hparam
        if not isinstance(self.compare_scratch, bool):
            raise ValueError(
                f"'compare_scratch' must be true or false, got {self.compare_scratch!r}"
            )


def student_model(teacher: Model, config: DistillConfig) -> Model:
    """The untrained student for ``teacher``'s data (same spec, other arch), seeded by config."""
    hparams = resolve_hparams(config.student, config.hparams)
    spec = replace(teacher.spec, arch=config.student, hparams=hparams)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        module = build_model(spec)
    return Model(module=module, spec=spec, source=teacher.source)


class DistillPass(Pass):
    """Teacher -> smaller student: ``Teacher(x) -> Student(x)``, reported against scratch."""

    name = "distill"
    config_type = DistillConfig

    def call(self, model: Model, ctx: PassContext) -> PassResult:
        objective = distill_objective(model.module, self.config, model.spec.horizon)
        student = self._train(model, ctx, objective)
        teacher_m, student_m = measure(model, ctx), measure(student, ctx)
        stats: dict[str, Any] = {
            "split": ctx.eval_split,  # MAE in raw units; teacher_gap: mean |. - teacher|, scaled
            "teacher": {"arch": model.spec.arch, **teacher_m},
            "student": {"arch": student.spec.arch, **student_m},
            "param_ratio": student_m["params"] / teacher_m["params"],
            "student_vs_teacher_pct": _pct(student_m["mae"], teacher_m["mae"]),
        }
        x = ctx.dataset.split(ctx.eval_split).x
        soft = reference_predict(model, x)
        stats["teacher_gap"] = {"student": _gap(student, x, soft)}
        if self.config.compare_scratch:
            scratch = self._train(model, ctx, self._scratch_objective(model.spec.horizon))
            scratch_m = measure(scratch, ctx)
            stats["scratch"] = {"arch": student.spec.arch, **scratch_m}
            stats["scratch_vs_teacher_pct"] = _pct(scratch_m["mae"], teacher_m["mae"])
            stats["student_vs_scratch_pct"] = _pct(student_m["mae"], scratch_m["mae"])
            stats["teacher_gap"]["scratch"] = _gap(scratch, x, soft)
        return PassResult(student, stats)

    def _scratch_objective(self, horizon: int) -> Any:
        """The same loss against the truth (same horizon weights, same targets), without a
        teacher: an objective too, so that train_module feeds both students the same targets."""
        return distill_objective(None, replace(self.config, alpha=1.0), horizon)

    def _train(self, teacher: Model, ctx: PassContext, objective: Any) -> Model:
        student = student_model(teacher, self.config)
        config = train_config(self.config, self.config.student)
        train_module(
            student.module, ctx.dataset.train, ctx.dataset.val, config, objective=objective
        )
        return student


def _gap(model: Model, x: np.ndarray, soft: np.ndarray) -> float:
    """Mean |model - teacher| over ``x``, in scaled units."""
    return float(np.abs(reference_predict(model, x) - soft).mean())


def _pct(values: list[float], reference: list[float]) -> list[float]:
    return [
        (v / r - 1) * 100 if r and v is not None else float("nan")
        for v, r in zip(values, reference, strict=True)
    ]
