"""Structured pruning pass: remove LSTM/GRU hidden units or TCN channels; the model really shrinks.

``Forecaster(width=W) -> Forecaster(width=w)``, w < W, with the kept units' weights copied over. The
budget is a ratio of units to remove, a parameter count, or a byte size of the weights; importance
is L1, L2 or Taylor on calibration windows (``edgecomp.passes.importance``). Recurrent models go
through our pruner (``prune_rnn``), the TCN through torch-pruning (``prune_conv``). Error rises
after pruning: follow it with the ``finetune`` pass.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edgecomp.checkpoint import apply_state_dict
from edgecomp.models import build_model, resolve_hparams
from edgecomp.passes.base import Pass, PassConfig, PassContext, PassError, PassResult, count_params
from edgecomp.passes.importance import check_criterion
from edgecomp.spec import Model

__all__ = ["WIDTH_HPARAM", "PruneConfig", "StructuredPrunePass", "prune_model", "target_width"]

WIDTH_HPARAM = {"lstm": "hidden", "gru": "hidden", "tcn": "channels", "stgnn": "channels"}


@dataclass(frozen=True)
class PruneConfig(PassConfig):
    """Structured pruning: set exactly one budget.

    Attributes:
        ratio: Fraction of hidden units (channels) to remove in every layer, in [0, 1).
        max_params: Keep the widest model with at most this many parameters.
        max_bytes: Keep the widest model whose weights take at most this many bytes, counting
            ``bytes_per_param`` per parameter (4 for fp32, 1 for an int8 target).
        bytes_per_param: Bytes per parameter for ``max_bytes``.
        importance: "l1", "l2" (magnitude) or "taylor" (gradient x weight on calibration windows).
    """

    ratio: float | None = None
    max_params: int | None = None
    max_bytes: int | None = None
    bytes_per_param: float = 4.0
    importance: str = "l2"

    def __post_init__(self) -> None:
        budgets = [k for k in ("ratio", "max_params", "max_bytes") if getattr(self, k) is not None]
        if len(budgets) != 1:
            raise ValueError(
                f"set exactly one of ratio, max_params, max_bytes (got {budgets or 'none'})"
            )
        if self.ratio is not None and not (_number(self.ratio) and 0 <= self.ratio < 1):
            raise ValueError(f"'ratio' must be a number in [0, 1), got {self.ratio!r}")
        for key in ("max_params", "max_bytes"):
            value = getattr(self, key)
            if value is not None and not (_number(value) and value >= 1):
                raise ValueError(f"'{key}' must be a number >= 1, got {value!r}")
        if not (_number(self.bytes_per_param) and self.bytes_per_param > 0):
            raise ValueError(f"'bytes_per_param' must be > 0, got {self.bytes_per_param!r}")
        check_criterion(self.importance)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def target_width(spec: Any, config: PruneConfig) -> int:
    """The width (hidden units or channels per layer) that meets ``config``'s budget."""
    key = WIDTH_HPARAM[spec.arch]
    width = resolve_hparams(spec.arch, spec.hparams)[key]
    if config.ratio is not None:
        return _expressible(spec, max(1, round(width * (1 - config.ratio))))
    limit = config.max_params
    if limit is None:
        limit = int(config.max_bytes // config.bytes_per_param)
    for w in range(width, 0, -1):
        if count_params(build_model(_with_width(spec, w))) <= limit:
            return _expressible(spec, w)
    smallest = count_params(build_model(_with_width(spec, 1)))
    raise ValueError(f"no width fits {limit:,} parameters (width 1 has {smallest:,})")


def _expressible(spec: Any, width: int) -> int:
    """``width``, or one less for a TCN whose width would equal its input features.

    NOTE: a TemporalBlock with as many channels as inputs has an identity skip instead of the
    1x1 convolution the original holds, so that width cannot carry the original's weights.
    """
    if spec.arch == "tcn" and width == spec.n_features and width > 1:
        return width - 1
    return width


def _with_width(spec: Any, width: int) -> Any:
    hparams = resolve_hparams(spec.arch, spec.hparams)
    return replace(spec, hparams={**hparams, WIDTH_HPARAM[spec.arch]: width})


def prune_model(
    model: Model,
    config: PruneConfig,
    calibration: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[Model, dict[str, Any]]:
    """Prune ``model`` (left unchanged) to ``config``'s budget; returns the new model and stats.

    ``calibration`` (scaled x [N, L, F], y [N, H, F_out]) is needed for the Taylor criterion and,
    for the TCN, to trace the graph (two windows suffice).
    """
    from edgecomp.passes.prune_conv import prune_tcn_state
    from edgecomp.passes.prune_rnn import prune_recurrent_state, recurrent_scores

    spec = model.spec
    width = target_width(spec, config)
    if spec.arch == "tcn":
        state, kept = prune_tcn_state(model.module, config.importance, width, calibration)
    elif spec.arch == "stgnn":  # graph forecaster: edgecomp.graph.prune
        from edgecomp.graph.prune import prune_graph_state

        state, kept = prune_graph_state(model.module, config.importance, width, calibration)
    else:
        scores = recurrent_scores(model.module, config.importance, calibration)
        state, kept = prune_recurrent_state(model.module, scores, width)
    new_spec = _with_width(spec, width)
    module = build_model(new_spec)
    apply_state_dict(module, state, source=f"pruned {spec.arch}")
    module.eval()
    key = WIDTH_HPARAM[spec.arch]
    stats = {
        "hparam": key,
        "width_before": resolve_hparams(spec.arch, spec.hparams)[key],
        "width_after": width,
        "kept": kept,
    }
    return Model(module=module, spec=new_spec, source=model.source), stats


class StructuredPrunePass(Pass):
    """Prune hidden units (LSTM/GRU) or channels (TCN): ``F_W(x) -> F_w(x)`` with w < W."""

    name = "prune"
    config_type = PruneConfig

    def requires(self, model: Model) -> None:
        if model.spec.arch not in WIDTH_HPARAM:
            raise PassError(
                f"pass 'prune': architecture '{model.spec.arch}' cannot be pruned. "
                f"Available: {sorted(WIDTH_HPARAM)}"
            )

    def call(self, model: Model, ctx: PassContext) -> PassResult:
        pruned, stats = prune_model(model, self.config, ctx.calibration())
        return PassResult(pruned, stats)
