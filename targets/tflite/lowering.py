"""A torch-side rewrite of the recurrent forecasters that litert-torch converts to a lean graph.

LSTM and GRU forecasters are rewritten into equivalent modules (same weights, same outputs up to
float rounding) before conversion:

- LSTM / GRU: the recurrence is unrolled here rather than by the converter. Each layer's input
  projection over all steps is one matmul (``x W_ih^T + b``) with every bias that can be moved
  out of the loop folded into it, so the per-step matmul ``h W_hh^T`` has no bias. An int8 bias
  depends on its matmul's input scale, which differs per step: a per-step bias costs an int32
  vector and a per-channel scale list per step (most of the int8 file before this rewrite).
  The zero initial state is never materialised (the first step skips the hidden matmul), so
  nothing in the graph but shape constants carries the batch size (see batch.py).
- The input projection is a 1x1 convolution over the steps and the residual a slice, so no
  reshape merges the batch with another axis.

TCN forecasters are rewritten to compute only the receptive cone of the last step (``ConeTCN``,
in targets/cone.py, which the ONNX target offers as its ``cone`` lowering too):
the head reads the last step alone, so the last block's second convolution needs one output, its
first the steps ``L-1, L-1-d, ...`` and so on back. Each block runs on the steps of its input
that are ``a`` apart (``a`` = gcd of its dilation and the spacing its output needs), with
dilation ``d / a`` and, for the second convolution (and a 1x1 skip convolution), the stride that
spacing asks for; the same weights, the same sums per output step (equal up to float rounding),
2.8x fewer convolution outputs for the default 48 steps and dilations 1, 2, 4, 8 (138, not 384).

Other modules are converted as they are.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# the cone lives in targets/cone.py (the ONNX target offers it too); re-exported here
from edgecomp.targets.cone import (  # noqa: F401
    TCN_DESCRIPTION,
    ConeTCN,
    cone_plan,
    cone_rewrites,
)

DESCRIPTION = (
    "unrolled by edgecomp: one input projection over all steps holding the foldable biases, "
    "a bias-free hidden matmul per step, no zero-state ops"
)


def rewrites(module: nn.Module) -> bool:
    """Whether ``rewrite`` has a lowering for ``module``."""
    from edgecomp.models import GRUForecaster, LSTMForecaster

    return isinstance(module, LSTMForecaster | GRUForecaster)


def rewrite(module: nn.Module) -> nn.Module | None:
    """An equivalent module with a lean unrolled recurrence or a TCN's receptive cone, or None
    (convert ``module`` as is)."""
    if rewrites(module):
        return UnrolledRecurrent(module).eval()
    return ConeTCN(module).eval() if cone_rewrites(module) else None


class UnrolledRecurrent(nn.Module):
    """A stacked LSTM / GRU forecaster with its steps written out (see the module docstring).

    The head and the residual stay the source model's; submodule names follow the source
    (``rnn``, ``head``), so layer records keep the source's names.
    """

    def __init__(self, source: nn.Module) -> None:
        super().__init__()
        self.source = [source]  # not a submodule: its own rnn must not be converted
        rnn = source.rnn
        self.kind = "lstm" if isinstance(rnn, nn.LSTM) else "gru"
        self.rnn = _Stack([_Layer(rnn, k, self.kind) for k in range(rnn.num_layers)])
        self.head = source.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _project(self.source[0], self.rnn(x.transpose(1, 2)), x)


class _Stack(nn.Module):
    """The layers (a module of its own, so converted tensor names read ``.../..._rnn/...``)."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, steps: torch.Tensor) -> torch.Tensor:
        for k, layer in enumerate(self.layers):
            steps = layer(steps, last_only=k == len(self.layers) - 1)
        return steps


class _Layer(nn.Module):
    """One recurrent layer: ``input`` (all steps at once) and ``hidden`` (per step, no bias)."""

    def __init__(self, rnn: nn.RNNBase, k: int, kind: str) -> None:
        super().__init__()
        w_ih, w_hh = getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}")
        b_ih, b_hh = _bias(rnn, k, "ih", w_ih), _bias(rnn, k, "hh", w_hh)
        self.kind, self.size = kind, rnn.hidden_size
        # a 1x1 convolution over the steps: a Linear on [B, L, F] flattens B*L, which the
        # converter cannot do with a symbolic batch
        self.input = nn.Conv1d(w_ih.shape[1], w_ih.shape[0], 1)
        self.hidden = nn.Linear(w_hh.shape[1], w_hh.shape[0], bias=False)
        with torch.no_grad():
            self.input.weight.copy_(w_ih[:, :, None])
            self.hidden.weight.copy_(w_hh)
            if kind == "lstm":
                self.input.bias.copy_(b_ih + b_hh)
            else:  # b_hn sits inside r * (W_hn h + b_hn): it cannot leave the step
                folded = b_hh.clone()
                folded[2 * self.size :] = 0
                self.input.bias.copy_(b_ih + folded)
        self.register_buffer("hidden_bias_n", b_hh[2 * self.size :].detach().clone())

    def forward(self, x: torch.Tensor, *, last_only: bool) -> torch.Tensor:
        """[B, F, L] -> the last hidden state [B, H], or all of them [B, H, L]."""
        projected = self.input(x).transpose(1, 2)  # [B, L, G*H]: each step's slice contiguous
        step = self._lstm if self.kind == "lstm" else self._gru
        state: Any = None
        outputs = []
        for t in range(x.shape[2]):
            h, state = step(projected[:, t], state)
            if not last_only:
                outputs.append(h)
        return h if last_only else torch.stack(outputs, dim=2)

    def _lstm(self, gates: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        if state is not None:
            gates = gates + self.hidden(state[0])
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(i) * torch.tanh(g)
        if state is not None:
            c = torch.sigmoid(f) * state[1] + c
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)

    def _gru(self, gates: torch.Tensor, h: Any) -> tuple[torch.Tensor, Any]:
        x_r, x_z, x_n = gates.chunk(3, dim=-1)
        if h is None:  # zero state: W_hh h = 0, so only b_hn remains
            r, z = torch.sigmoid(x_r), torch.sigmoid(x_z)
            n = torch.tanh(x_n + r * self.hidden_bias_n)
            out = n - z * n
            return out, out
        h_r, h_z, h_n = self.hidden(h).chunk(3, dim=-1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * (h_n + self.hidden_bias_n))
        out = n + z * (h - n)
        return out, out


def _bias(rnn: nn.RNNBase, k: int, side: str, weight: torch.Tensor) -> torch.Tensor:
    bias = getattr(rnn, f"bias_{side}_l{k}", None)
    return torch.zeros(weight.shape[0]) if bias is None else bias.detach()


def _project(source: nn.Module, last: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The source's head and residual, with a reshape that names no batch size."""
    y = source.head(last).unflatten(1, (source.horizon, source.n_targets))
    if not source.residual:
        return y
    index = source.target_index.tolist()
    if index == list(range(index[0], index[0] + len(index))):  # a slice, not a gather
        return y + x[:, -1:, index[0] : index[0] + len(index)]
    return y + x[:, -1:, :].index_select(2, source.target_index)
