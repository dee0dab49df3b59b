"""Model passes: the base class, the context they run in, and what each one records.

A model pass maps a ``Model`` (nn.Module + ModelSpec) to a new ``Model`` before any target lowering,
so it serves every target. ``run_passes`` applies passes in order and measures each one the same
way (parameters, fp32 weight bytes, per-horizon MAE on the evaluation split, before and after); the
records go to ``edgecomp.pipeline.build(..., passes=records)`` and so into the manifest.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from edgecomp.data import Dataset
from edgecomp.frontend import reference_predict
from edgecomp.metrics import horizon_metrics
from edgecomp.spec import Model

__all__ = [
    "Pass",
    "PassConfig",
    "PassContext",
    "PassError",
    "PassResult",
    "config_from_dict",
    "count_params",
    "measure",
    "state_bytes",
    "weight_bytes",
]


class PassError(ValueError):
    """A pass cannot run on this model or config; the message names the pass."""


@dataclass(frozen=True)
class PassConfig:
    """Base of pass configs: frozen, JSON-safe fields, a ``version`` stored with the record."""

    version: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field."""
        return dataclasses.asdict(self)


def config_from_dict(config_type: type[PassConfig], data: Any, *, where: str) -> PassConfig:
    """Build ``config_type`` from a dict; errors name ``where`` and the offending key.

    Raises:
        PassError: Not a dict, an unknown key (with the known ones), or an invalid value.
    """
    if not isinstance(data, dict):
        raise PassError(f"{where}: expected a table of options, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(config_type)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PassError(f"{where}: unknown key '{unknown[0]}'. Known: {sorted(known)}")
    try:
        return config_type(**data)
    except (TypeError, ValueError) as exc:
        raise PassError(f"{where}: {exc}") from None


@dataclass
class PassContext:
    """What passes may read: the model's dataset (scaled windows) and where to measure error.

    Attributes:
        dataset: Windows of the data the model was trained on (train / val / test splits).
        eval_split: Split on which every pass's error before and after is measured.
        calibration_windows: Cap on training windows used by data-driven criteria.
        source_model: The model the passes started from (set by ``run_passes``): the teacher of
            fine-tuning with ``alpha < 1``.
    """

    dataset: Dataset
    eval_split: str = "test"
    calibration_windows: int = 256
    source_model: Model | None = None

    def calibration(self) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``calibration_windows`` training windows (x, y), spread over the split."""
        train = self.dataset.train
        index = np.linspace(0, len(train) - 1, num=min(self.calibration_windows, len(train)))
        index = np.unique(index.round().astype(int))
        return train.x[index], train.y[index]


@dataclass(frozen=True)
class PassResult:
    """A pass's output model and pass-specific statistics (JSON-safe)."""

    model: Model
    stats: dict[str, Any] = field(default_factory=dict)


class Pass(abc.ABC):
    """A model pass: ``Model -> Model``, configured by a frozen ``PassConfig``.

    Subclasses set ``name`` and ``config_type`` and implement ``call``; ``requires`` may refuse a
    model before anything runs. Only the base defines ``__call__``.
    """

    name: ClassVar[str]
    config_type: ClassVar[type[PassConfig]]

    def __init__(self, config: PassConfig) -> None:
        if not isinstance(config, self.config_type):
            raise PassError(
                f"pass '{self.name}' takes a {self.config_type.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = config

    def requires(self, model: Model) -> None:  # noqa: B027 - optional hook
        """Raise PassError when ``model`` cannot go through this pass."""

    @abc.abstractmethod
    def call(self, model: Model, ctx: PassContext) -> PassResult:
        """Return the transformed model (the input model is left unchanged)."""

    def __call__(self, model: Model, ctx: PassContext) -> PassResult:
        self.requires(model)
        try:
            return self.call(model, ctx)
        except PassError:
            raise
        except ValueError as exc:
            raise PassError(f"pass '{self.name}': {exc}") from None


def count_params(module: torch.nn.Module) -> int:
    """Number of parameters (every element of every parameter tensor)."""
    return int(sum(p.numel() for p in module.parameters()))


def state_bytes(module: torch.nn.Module) -> bytes:
    """The module's state_dict serialized as safetensors (fp32 weights plus a small header)."""
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()})


def weight_bytes(module: torch.nn.Module) -> int:
    """Size in bytes of ``state_bytes(module)``."""
    return len(state_bytes(module))


def measure(model: Model, ctx: PassContext) -> dict[str, Any]:
    """Parameters, weight bytes and per-horizon MAE (raw units) on ``ctx.eval_split``."""
    windows = ctx.dataset.split(ctx.eval_split)
    pred = ctx.dataset.unscale_targets(reference_predict(model, windows.x))
    truth, observed = ctx.dataset.raw_targets(ctx.eval_split), windows.y_observed
    mae = horizon_metrics(truth, pred, observed=observed)["mae"]  # observed values only
    return {
        "params": count_params(model.module),
        "weight_bytes": weight_bytes(model.module),
        "mae": [None if v is None else float(v) for v in mae],
    }
