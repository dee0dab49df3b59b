"""Fine-tuning pass: train the model further with `edgecomp train`'s loop (after pruning).

``F(x) -> F'(x)``, same architecture and shapes, trained on the training split with early stopping
on validation (``edgecomp.train.train_module``); the best validation epoch's weights are kept.
With ``alpha < 1`` the batch loss also pulls the model towards the forecasts of the recipe's input
model (``PassContext.source_model``, e.g. the unpruned network): distillation-aided fine-tuning.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from edgecomp.passes.base import Pass, PassConfig, PassContext, PassResult
from edgecomp.spec import Model
from edgecomp.train import TrainConfig, train_module

__all__ = ["FinetuneConfig", "FinetunePass", "distill_objective", "train_config"]


@dataclass(frozen=True)
class FinetuneConfig(PassConfig):
    """Fine-tuning: the fields of ``edgecomp.train.TrainConfig`` that a pass may set, and the loss.

    Attributes:
        epochs: Maximum epochs.
        lr: Adam learning rate.
        patience: Early-stopping patience (epochs).
        batch_size: Windows per step.
        loss: "mse" or "mae" against the truth, in scaled units.
        seed: Shuffling and dropout seed.
        alpha: Weight of the loss against the truth; ``1 - alpha`` weighs the MSE to the teacher.
        horizon_weights: One weight per horizon step (normalized to mean 1), or None.
    """

    epochs: int = 10
    lr: float = 1e-3
    patience: int = 4
    batch_size: int = 64
    loss: str = "mse"
    seed: int = 0
    alpha: float = 1.0
    horizon_weights: list[float] | None = None

    def __post_init__(self) -> None:
        train_config(self, "lstm")  # TrainConfig checks its fields and names them
        if not (isinstance(self.alpha, int | float) and 0 <= self.alpha <= 1):
            raise ValueError(f"'alpha' must be a number in [0, 1], got {self.alpha!r}")
        weights = self.horizon_weights
        if weights is not None and not (
            isinstance(weights, list)
            and weights
            and all(isinstance(w, int | float) and w >= 0 for w in weights)
            and sum(weights) > 0
        ):
            raise ValueError(f"'horizon_weights' must be a list of numbers >= 0, got {weights!r}")


def train_config(config: FinetuneConfig, arch: str) -> TrainConfig:
    """The ``TrainConfig`` that ``config`` stands for (threads: 1)."""
    return TrainConfig(
        arch=arch,
        epochs=config.epochs,
        lr=config.lr,
        patience=config.patience,
        batch_size=config.batch_size,
        loss=config.loss,
        seed=config.seed,
    )


def distill_objective(teacher: torch.nn.Module | None, config: FinetuneConfig, horizon: int) -> Any:
    """``objective(student, x, y)`` for ``train_module``:
    ``alpha * loss(student, y) + (1 - alpha) * MSE(student, teacher(x))``, weighted per step.
    """
    weights = _horizon_weights(config.horizon_weights, horizon)
    if config.alpha < 1 and teacher is None:
        raise ValueError("'alpha' < 1 needs a teacher model")
    teacher = None if config.alpha == 1 else copy.deepcopy(teacher).eval()

    def error(out: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
        diff = out - target
        e = diff.square() if kind == "mse" else diff.abs()
        return (e if weights is None else e * weights).mean()

    def objective(student: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = student(x)
        loss = error(out, y, config.loss)
        if teacher is None:
            return loss
        with torch.no_grad():
            soft = teacher(x)
        return config.alpha * loss + (1 - config.alpha) * error(out, soft, "mse")

    return objective


def _horizon_weights(values: list[float] | None, horizon: int) -> torch.Tensor | None:
    if values is None:
        return None
    if len(values) != horizon:
        raise ValueError(
            f"'horizon_weights' has {len(values)} values, the model forecasts {horizon} steps"
        )
    weights = torch.tensor(values, dtype=torch.float32)
    return (weights / weights.mean()).reshape(1, -1, 1)


class FinetunePass(Pass):
    """Train further on the training split, early-stopped on validation: ``F(x) -> F'(x)``."""

    name = "finetune"
    config_type = FinetuneConfig

    def call(self, model: Model, ctx: PassContext) -> PassResult:
        config = self.config
        objective = None
        if config.alpha < 1 or config.horizon_weights is not None:
            teacher = None if ctx.source_model is None else ctx.source_model.module
            objective = distill_objective(teacher, config, model.spec.horizon)
        module = copy.deepcopy(model.module)
        result = train_module(
            module,
            ctx.dataset.train,
            ctx.dataset.val,
            train_config(config, model.spec.arch),
            objective=objective,
        )
        stats = {
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "best_val_loss": result.best_val_loss,
            "seconds": result.seconds,
        }
        return PassResult(Model(module=result.module, spec=model.spec, source=model.source), stats)
