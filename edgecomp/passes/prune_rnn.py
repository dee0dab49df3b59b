"""Hidden-unit pruning of stacked LSTM / GRU forecasters (ours: torch-pruning cannot trace RNNs).

Removing hidden unit ``j`` of layer ``k`` removes, in ``nn.LSTM`` / ``nn.GRU`` weights, row
``g * H + j`` of every gate block ``g`` of ``weight_ih_lk``, ``weight_hh_lk``, ``bias_ih_lk`` and
``bias_hh_lk``, column ``j`` of ``weight_hh_lk`` (the recurrence), and column ``j`` of the consumer:
``weight_ih_l{k+1}`` or, for the last layer, ``head.weight``. Every layer keeps the same number of
units (``nn.LSTM`` has one hidden size, and a stacked op is what ONNX exports natively), chosen per
layer by importance. With zero initial state, a unit whose producing rows are all zero stays at
zero forever (LSTM: ``c = 0.5 c``, ``h = 0.5 tanh(c)``; GRU: ``h = 0.5 h``), so the pruned model
equals the original with those rows zeroed: ``LSTM_H(x)[kept] -> LSTM_h(x)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgecomp.passes.importance import element_scores, finalize, loss_gradients, top_units

__all__ = ["GATES", "prune_recurrent_state", "recurrent_scores"]

GATES: dict[type[nn.Module], int] = {nn.LSTM: 4, nn.GRU: 3}


def _rnn(module: nn.Module) -> nn.RNNBase:
    rnn = getattr(module, "rnn", None)
    if type(rnn) not in GATES or rnn.bidirectional or rnn.proj_size or not rnn.bias:
        raise ValueError(
            "the recurrent pruner handles forecasters with `rnn` = a unidirectional "
            "nn.LSTM / nn.GRU with biases and no projection"
        )
    return rnn


def _layer_names(k: int) -> list[str]:
    return [f"rnn.{kind}_l{k}" for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def _consumer(k: int, layers: int) -> str:
    return f"rnn.weight_ih_l{k + 1}" if k + 1 < layers else "head.weight"


def recurrent_scores(
    module: nn.Module, criterion: str, calibration: tuple[np.ndarray, np.ndarray] | None = None
) -> list[torch.Tensor]:
    """Importance of every hidden unit, one tensor [hidden] per layer.

    A unit's score sums ``element_scores`` over its gate rows, its recurrent column and its
    consumer column (see the module docstring), then ``finalize`` (sqrt for L2).
    """
    rnn = _rnn(module)
    gates, hidden, layers = GATES[type(rnn)], rnn.hidden_size, rnn.num_layers
    grads = loss_gradients(module, *calibration) if criterion == "taylor" else {}
    params = dict(module.named_parameters())

    def scores(name: str) -> torch.Tensor:
        return element_scores(params[name], grads.get(name), criterion)

    result = []
    for k in range(layers):
        total = torch.zeros(hidden, dtype=torch.float64)
        for name in _layer_names(k):
            total += scores(name).reshape(gates, hidden, -1).sum(dim=(0, 2)).double()
        total += scores(f"rnn.weight_hh_l{k}").sum(dim=0).double()
        total += scores(_consumer(k, layers)).sum(dim=0).double()
        result.append(finalize(total, criterion))
    return result


def prune_recurrent_state(
    module: nn.Module, scores: list[torch.Tensor], width: int
) -> tuple[dict[str, torch.Tensor], dict[str, list[int]]]:
    """The state_dict of the model keeping the ``width`` best units per layer, and those units.

    Returns:
        (state, kept): ``state`` loads into the same architecture with ``hidden=width``;
        ``kept`` maps ``"rnn.l{k}"`` to the kept unit indices of layer k (ascending).
    """
    rnn = _rnn(module)
    gates, hidden, layers = GATES[type(rnn)], rnn.hidden_size, rnn.num_layers
    if not 1 <= width <= hidden:
        raise ValueError(f"cannot keep {width} of {hidden} hidden units")
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    kept = {}
    for k in range(layers):
        keep = top_units(scores[k], width)
        rows = torch.cat([keep + g * hidden for g in range(gates)])
        for name in _layer_names(k):
            state[name] = state[name][rows]
        hh, consumer = f"rnn.weight_hh_l{k}", _consumer(k, layers)
        state[hh] = state[hh][:, keep]
        state[consumer] = state[consumer][:, keep]
        kept[f"rnn.l{k}"] = keep.tolist()
    return {k: v.contiguous() for k, v in state.items()}, kept
