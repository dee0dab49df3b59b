"""Train a forecaster on windows: Adam, early stopping with best-weights restore, seeded.

Losses are computed in scaled units (what the module sees). The same config and the same initial
weights give the same trained weights: shuffling uses a numpy generator seeded from the config,
and torch's generator (dropout) is seeded too.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgecomp.data.windows import Windows

__all__ = [
    "LOSSES",
    "TrainConfig",
    "TrainResult",
    "baseline_warnings",
    "epoch_printer",
    "predict",
    "train_module",
    "training_warnings",
]

LOSSES: dict[str, Callable[[], nn.Module]] = {"mse": nn.MSELoss, "mae": nn.L1Loss}


# objective(module, x, y) -> scalar training loss of one batch
Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class TrainConfig:
    """How to train a forecaster.

    Attributes:
        arch: Registered architecture to build (see ``edgecomp.models.MODELS``).
        hparams: Architecture hyperparameters, merged over its defaults.
        epochs: Maximum number of passes over the training windows.
        batch_size: Windows per optimizer step.
        lr: Adam learning rate.
        loss: "mse" or "mae", in scaled units.
        patience: Stop after this many epochs without a lower validation loss.
        seed: Seeds torch and the shuffling generator.
        threads: torch intra-op threads.
        weight_decay: Adam weight decay (L2).
    """

    arch: str = "lstm"
    hparams: dict[str, Any] = field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    loss: str = "mse"
    patience: int = 5
    seed: int = 0
    threads: int = 1
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        checks = [
            ("arch", isinstance(self.arch, str) and bool(self.arch), "a non-empty string"),
            (
                "hparams",
                isinstance(self.hparams, dict) and all(isinstance(k, str) for k in self.hparams),
                "a dict with string keys",
            ),
            ("loss", self.loss in LOSSES, f"one of {sorted(LOSSES)}"),
            ("lr", _is_number(self.lr) and self.lr > 0, "a positive number"),
            (
                "weight_decay",
                _is_number(self.weight_decay) and self.weight_decay >= 0,
                "a number >= 0",
            ),
            ("seed", _is_int(self.seed) and self.seed >= 0, "an integer >= 0"),
        ]
        for name in ("epochs", "batch_size", "patience", "threads"):
            value = getattr(self, name)
            checks.append((name, _is_int(value) and value >= 1, "an integer >= 1"))
        for name, ok, expected in checks:
            if not ok:
                value = getattr(self, name)
                raise ValueError(f"TrainConfig.{name} must be {expected}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        """Rebuild from ``to_dict()`` output; missing fields take their defaults.

        Raises:
            ValueError: Not a dict, an unknown field (named), or an invalid value.
        """
        if not isinstance(data, dict):
            raise ValueError(f"TrainConfig: expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"TrainConfig: unknown field(s) {unknown}")
        return cls(**data)


@dataclass
class TrainResult:
    """What training produced.

    Attributes:
        module: The trained module, holding the best validation weights, in eval mode.
        history: One ``{"epoch", "train_loss", "val_loss", "seconds", "lr"}`` per epoch run
            (epochs count from 1), plus ``"val_mae"`` (per step) when a ``val_error`` was given.
        best_epoch: Epoch whose weights were kept.
        best_val_loss: Its validation loss.
        seconds: Wall time of training.
        stop_reason: Why training ended, one sentence (early stop or the epoch limit).
        epochs: The epoch limit (``TrainConfig.epochs``).
    """

    module: nn.Module
    history: list[dict[str, float]]
    best_epoch: int
    best_val_loss: float
    seconds: float
    stop_reason: str = ""
    epochs: int = 0


def _tensors(
    name: str, windows: Windows, observed_only: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    if len(windows) == 0:
        raise ValueError(f"{name} windows are empty")
    if windows.x.ndim != 3 or windows.y.ndim != 3:
        raise ValueError(
            f"{name} windows must have x [N, L, F] and y [N, H, F_out], got "
            f"{list(windows.x.shape)} and {list(windows.y.shape)}"
        )
    x = torch.from_numpy(np.ascontiguousarray(windows.x, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(windows.y, dtype=np.float32))
    if observed_only and not windows.y_observed.all():  # imputed truth: NaN, skipped by the loss
        y = torch.where(torch.from_numpy(windows.y_observed), y, torch.nan)
    return x, y


class _ObservedLoss(nn.Module):
    """``loss`` over the targets that are not NaN (observed); 0 when a batch has none."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        keep = ~torch.isnan(y)
        if bool(keep.all()):
            return self.loss(out, y)
        if not bool(keep.any()):
            return (out * 0.0).sum()
        return self.loss(out[keep], y[keep])


def _check_output(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """Refuse a module whose output shape differs from the targets (the loss would broadcast)."""
    module.eval()
    with torch.no_grad():
        out = module(x[:1])
    if tuple(out.shape[1:]) != tuple(y.shape[1:]):
        raise ValueError(
            f"module output [batch, {', '.join(map(str, out.shape[1:]))}] does not "
            f"match the targets [batch, {', '.join(map(str, y.shape[1:]))}]"
        )


def _run_epoch(
    module: nn.Module,
    data: tuple[torch.Tensor, torch.Tensor],
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    order: np.ndarray,
    batch_size: int,
    objective: Objective | None = None,
) -> float:
    x, y = data
    module.train()
    total = 0.0
    for begin in range(0, len(order), batch_size):
        index = torch.from_numpy(order[begin : begin + batch_size])
        optimizer.zero_grad()
        if objective is None:
            loss = loss_fn(module(x[index]), y[index])
        else:
            loss = objective(module, x[index], y[index])
        loss.backward()
        optimizer.step()
        total += loss.item() * len(index)
    return total / len(order)


def _evaluate(
    module: nn.Module, data: tuple[torch.Tensor, torch.Tensor], loss_fn: nn.Module, batch_size: int
) -> float:
    x, y = data
    module.eval()
    total = 0.0
    with torch.no_grad():
        for begin in range(0, len(x), batch_size):
            xb, yb = x[begin : begin + batch_size], y[begin : begin + batch_size]
            total += float(loss_fn(module(xb), yb)) * len(xb)
    return total / len(x)


def _writer(log_dir: str | Path | None) -> Any:
    if log_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))


class _Stopper:
    """Early stopping on validation loss, keeping a copy of the best weights."""

    def __init__(self, patience: int) -> None:
        self.patience, self.best_loss, self.best_epoch, self.bad = patience, math.inf, 0, 0
        self.state: dict[str, torch.Tensor] = {}

    def update(self, module: nn.Module, epoch: int, val_loss: float) -> bool:
        """Record an epoch; True when training should stop."""
        if val_loss < self.best_loss:
            self.best_loss, self.best_epoch, self.bad = val_loss, epoch, 0
            self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            return False
        self.bad += 1
        return self.bad >= self.patience


def train_module(
    module: nn.Module,
    train: Windows,
    val: Windows,
    config: TrainConfig,
    *,
    log_dir: str | Path | None = None,
    on_epoch: Callable[[int, float, float], None] | None = None,
    objective: Objective | None = None,
    val_error: Callable[[nn.Module], list[float | None]] | None = None,
) -> TrainResult:
    """Train ``module`` in place on scaled windows; keep the weights of the best validation epoch.

    Args:
        module: Maps x [B, L, F] to [B, H, F_out], matching ``train.y``.
        train: Training windows (shuffled each epoch).
        val: Validation windows (early stopping).
        config: Optimizer, loss, epochs, patience, seed, threads.
        log_dir: If given, TensorBoard event files with ``loss/train``, ``loss/val`` and ``lr``
            per epoch (and ``val_mae/h<k>``, ``val_mae/mean`` with ``val_error``).
        on_epoch: Called as ``on_epoch(epoch, train_loss, val_loss)`` after each epoch.
        objective: If given, the training loss of a batch as ``objective(module, x, y)``
            (e.g. distillation or a FedProx term) instead of ``config.loss`` against ``y``.
            Validation and early stopping still use ``config.loss`` against the truth.
        val_error: If given, called after each epoch: the module's validation MAE per horizon
            step in raw target units on observed values (``edgecomp.workflow.val_error``),
            recorded as the epoch's ``val_mae`` in the history and logged to TensorBoard.

    Raises:
        ValueError: Empty or ill-shaped windows, an output shape that differs from the targets,
            or a loss that is no longer finite (lower ``lr``).
    """
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    # the loss reads observed targets only (imputed truth is never learned nor scored); an
    # objective (distillation, FedProx) gets the imputed targets as before
    data = _tensors("train", train, objective is None), _tensors("val", val, True)
    _check_output(module, *data[0])
    loss_fn = _ObservedLoss(LOSSES[config.loss]())
    optimizer = torch.optim.Adam(
        module.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    stopper, history, writer = _Stopper(config.patience), [], _writer(log_dir)
    began = time.perf_counter()
    reason = f"ran all {config.epochs} epochs"
    try:
        for epoch in range(1, config.epochs + 1):
            order = rng.permutation(len(train))
            start = time.perf_counter()
            train_loss, val_loss = _epoch(
                module, data, loss_fn, optimizer, order, config, epoch, objective
            )
            seconds = time.perf_counter() - start
            history.append(
                {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "seconds": seconds}
            )
            _log_extra(writer, history[-1], optimizer, module, val_error)
            _log(writer, on_epoch, epoch, train_loss, val_loss)
            if stopper.update(module, epoch, val_loss):
                reason = (
                    f"stopped early at epoch {epoch}/{config.epochs}: no lower validation loss "
                    f"for {config.patience} epochs (patience)"
                )
                break
    finally:
        if writer is not None:
            writer.close()
    module.load_state_dict(stopper.state)
    module.eval()
    elapsed = time.perf_counter() - began
    return TrainResult(
        module, history, stopper.best_epoch, stopper.best_loss, elapsed, reason, config.epochs
    )


def epoch_printer(print_line: Callable[[str], None], epochs: int) -> Callable:
    """An ``on_epoch`` callback printing ``epoch k/N``, both losses, time per epoch and an ETA.

    The ETA assumes every remaining epoch runs (early stopping can end sooner); ``*`` marks a new
    best validation loss.
    """
    state = {"last": time.perf_counter(), "total": 0.0, "best": math.inf}

    def on_epoch(epoch: int, train_loss: float, val_loss: float) -> None:
        now = time.perf_counter()
        state["total"] += now - state["last"]
        per_epoch, state["last"] = now - state["last"], now
        eta = state["total"] / epoch * (epochs - epoch)
        best = "*" if val_loss < state["best"] else " "
        state["best"] = min(state["best"], val_loss)
        print_line(
            f"epoch {epoch:{len(str(epochs))}d}/{epochs}  train {train_loss:.4f}  "
            f"val {val_loss:.4f}{best}  {per_epoch:.1f} s/epoch  ETA {_duration(eta)}"
        )

    return on_epoch


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"


def training_warnings(result: TrainResult) -> list[str]:
    """Warnings about how training went: the best epoch was the last one or the first one."""
    ran = len(result.history)
    if ran < 2:
        return []
    if result.best_epoch == ran and ran == result.epochs:
        return [
            f"the best epoch is the last one ({ran}/{result.epochs}): validation loss was still "
            f"falling, so the model is probably under-trained; raise --epochs"
        ]
    if result.best_epoch == 1:
        return [
            f"the best epoch is the first one (of {ran}): validation loss never improved after "
            f"epoch 1; try a lower --lr, a smaller model, or check that the inputs predict the "
            f"targets"
        ]
    return []


def baseline_warnings(evaluation: dict[str, Any]) -> list[str]:
    """One warning per baseline that beats the model at some step, naming the steps.

    Args:
        evaluation: ``{"model": {"mae": [H]}, "baselines": {name: {"mae": [H]}}, "split": ...}``;
            steps whose MAE is None (nothing scored) are skipped.
    """
    model = evaluation["model"]["mae"]
    split = evaluation.get("split", "test")
    out = []
    for name, metrics in evaluation.get("baselines", {}).items():
        pairs = zip(model, metrics["mae"], strict=True)
        lost = [(h, m, b) for h, (m, b) in enumerate(pairs, 1) if None not in (m, b) and m > b]
        if lost:
            steps = ", ".join(f"h{h} ({m:.4g} vs {b:.4g})" for h, m, b in lost)
            out.append(
                f"the model loses to the {name} baseline on the {split} split at "
                f"{len(lost)} of {len(model)} steps (MAE model vs baseline): {steps}"
            )
    return out


def _epoch(
    module: nn.Module,
    data: tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    order: np.ndarray,
    config: TrainConfig,
    epoch: int,
    objective: Objective | None,
) -> tuple[float, float]:
    """One pass over the training windows, then the validation loss; refuses a non-finite loss."""
    train_loss = _run_epoch(
        module, data[0], loss_fn, optimizer, order, config.batch_size, objective
    )
    val_loss = _evaluate(module, data[1], loss_fn, config.batch_size)
    if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
        raise ValueError(
            f"training diverged at epoch {epoch} (train loss {train_loss}, "
            f"val loss {val_loss}); lower TrainConfig.lr"
        )
    return train_loss, val_loss


def _log_extra(
    writer: Any,
    record: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    module: nn.Module,
    val_error: Callable[[nn.Module], list[float | None]] | None,
) -> None:
    """The epoch's learning rate and validation MAE per step: into ``record`` and TensorBoard."""
    from edgecomp.tblog import current_lr, log_epoch

    record["lr"] = current_lr(optimizer)
    if val_error is not None:
        record["val_mae"] = val_error(module)
    if writer is not None:
        log_epoch(writer, record["epoch"], record["lr"], record.get("val_mae"))


def _log(
    writer: Any,
    on_epoch: Callable[[int, float, float], None] | None,
    epoch: int,
    train_loss: float,
    val_loss: float,
) -> None:
    if writer is not None:
        writer.add_scalar("loss/train", train_loss, epoch)
        writer.add_scalar("loss/val", val_loss, epoch)
        writer.flush()
    if on_epoch is not None:
        on_epoch(epoch, train_loss, val_loss)


def predict(module: nn.Module, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Run ``module`` on scaled inputs [N, L, F] without gradients; returns float32 [N, H, F_out].

    The module runs in eval mode; its previous mode is restored afterwards.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 3 or len(x) == 0:
        raise ValueError(f"x must be [N, L, F] with N >= 1, got shape {list(x.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            outs = [
                module(torch.from_numpy(x[i : i + batch_size])).numpy()
                for i in range(0, len(x), batch_size)
            ]
    finally:
        module.train(was_training)
    return np.concatenate(outs).astype(np.float32, copy=False)
