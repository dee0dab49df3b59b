"""The receptive cone of a TCN forecaster's last step, shared by the LiteRT and ONNX backends.

The TCN head reads the last step alone, so the last block's second convolution needs one output,
its first the steps ``L-1, L-1-d, ...`` and so on back. ``ConeTCN`` runs each block on the steps
of its input that are ``a`` apart (``a`` = gcd of its dilation and the spacing its output needs),
with dilation ``d / a`` and, for the second convolution (and a 1x1 skip convolution), the stride
that spacing asks for; the same weights, the same sums per output step (equal up to float
rounding), 2.8x fewer convolution outputs for the default 48 steps and dilations 1, 2, 4, 8 (138,
not 384).

LiteRT converts it in place of every TCN (targets/tflite/lowering.py); the ONNX target offers it
as the build-time candidate lowering ``cone`` (``onnx_lowering``, measured against the default
export by targets/onnx/candidates.py).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

TCN_DESCRIPTION = (
    "receptive cone by edgecomp: each block computes only the steps the last step's forecast "
    "reads (strided, re-dilated convolutions with the source weights)"
)


def cone_rewrites(module: nn.Module) -> bool:
    """Whether ``rewrite`` computes ``module``'s receptive cone (a TCN forecaster)."""
    from edgecomp.models import TCNForecaster

    return isinstance(module, TCNForecaster)


def cone_plan(dilations: list[int]) -> list[tuple[int, int | None]]:
    """Per block: (``a``, ``s``): its input is every ``a``-th step ending at the last, its output
    every ``s``-th (None: the last step alone)."""
    plan: list[tuple[int, int | None]] = []
    spacing: int | None = None
    for dilation in reversed(dilations):
        step = dilation if spacing is None else math.gcd(spacing, dilation)
        plan.append((step, spacing))
        spacing = step
    return plan[::-1]


class ConeTCN(nn.Module):
    """A TCN forecaster that computes the receptive cone of its last step (module docstring).

    Submodule names follow the source (``blocks.k.conv1``, ``blocks.k.conv2``, ``blocks.k.skip``,
    ``head``), so layer records keep the source's names.
    """

    def __init__(self, source: nn.Module) -> None:
        super().__init__()
        self.source = [source]  # not a submodule: its own blocks must not be converted
        plan = cone_plan(list(source.dilations))
        self.first = plan[0][0]
        self.blocks = nn.Sequential(
            *(_ConeBlock(block, a, s) for block, (a, s) in zip(source.blocks, plan, strict=True))
        )
        self.head = source.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(_every(x.transpose(1, 2), self.first))
        return self.source[0]._project(h[:, :, -1], x)


class _ConeBlock(nn.Module):
    """A ``TemporalBlock`` on every ``a``-th step, giving every ``s``-th.

    ``s`` None (the last block): every ``a``-th too, and the forecast's slice takes the last. One
    output would do, but then LiteRT's head reads the convolution's output directly, and
    litert-torch names that tensor after the convolution: the layer records lose ``head``.
    """

    def __init__(self, block: nn.Module, a: int, s: int | None) -> None:
        super().__init__()
        kernel, dilation = block.conv1.kernel_size[0], block.conv1.dilation[0]
        self.span = (kernel - 1) * dilation // a  # left padding of each convolution
        self.step = 1 if s is None else s // a
        self.conv1 = _conv(block.conv1, dilation // a, 1)
        self.conv2 = _conv(block.conv2, dilation // a, self.step)
        # a 1x1 skip convolution takes the stride itself (one op less than a max pool)
        self.strided = isinstance(block.skip, nn.Conv1d) and self.step > 1
        self.skip = _conv(block.skip, 1, self.step) if self.strided else block.skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(F.pad(x, (self.span, 0))))
        # the first output position that the stride lands on the last step from
        first = (h.shape[2] - 1) % self.step
        h = F.pad(h, (self.span - first, 0)) if first <= self.span else h[:, :, first - self.span :]
        skip = self.skip(_tail(x, self.step) if self.strided else _every(x, self.step))
        return torch.relu(torch.relu(self.conv2(h)) + skip)


def _conv(conv: nn.Conv1d, dilation: int, stride: int) -> nn.Conv1d:
    """``conv``'s weights with another dilation and stride."""
    new = nn.Conv1d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size[0],
        dilation=dilation,
        stride=stride,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        new.weight.copy_(conv.weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def _every(x: torch.Tensor, step: int) -> torch.Tensor:
    """Every ``step``-th step of ``x`` [B, C, n], ending at the last: a max pool of one step
    (LiteRT's MAX_POOL_2D, which XNNPACK runs; a strided slice is slower there in int8)."""
    if step == 1:
        return x
    return F.max_pool1d(_tail(x, step), kernel_size=1, stride=step)


def _tail(x: torch.Tensor, step: int) -> torch.Tensor:
    """``x`` from the first step that a stride of ``step`` takes to the last."""
    first = (x.shape[2] - 1) % step
    return x[:, :, first:] if first else x


def applies(module_type: type, precision: str) -> bool:
    """Whether the ONNX ``cone`` lowering applies to a forecaster class at ``precision``: an
    edgecomp TCN forecaster at fp32 or int8 (``candidates.applicable_lowerings`` asks)."""
    from edgecomp.models import TCNForecaster

    return issubclass(module_type, TCNForecaster) and precision in ("fp32", "int8")


def onnx_lowering(request: Any, fp32: Any) -> Any:
    """The cone lowering for the ONNX target, for ``candidates.py``: ``ConeTCN`` exported like the
    default graph and, at int8, quantized by the default rule (static QDQ Conv, calibrated on the
    same windows with the same settings and ``keep_float``); None where it does not apply.

    Args:
        request: The emit request (``targets.base.Request``): model, precision, options.
        fp32: The default lowering at fp32 (``targets.base.Lowered``); its io is kept.

    Returns:
        A ``targets.base.Lowered`` whose model is the cone graph, or None.
    """
    from dataclasses import replace

    from edgecomp.targets import base
    from edgecomp.targets.onnx.export import export_model
    from edgecomp.targets.onnx.keep import kept_nodes
    from edgecomp.targets.onnx.layers import layer_records
    from edgecomp.targets.onnx.quantize import keep_float_entries
    from edgecomp.targets.onnx.target import _finish, _int8

    module, spec = request.model.module, request.model.spec
    if not applies(type(module), str(request.precision)):
        return None
    cone = ConeTCN(module).eval()
    exported = export_model(cone, spec.input_len, spec.n_features, opset=request.options.opset)
    lowering = {**fp32.lowering, "tcn_lowering": TCN_DESCRIPTION}
    if request.precision is base.Precision.FP32:
        layers = layer_records(exported, exported, cone, precision="fp32")
        return _finish(exported, fp32.io, layers, lowering, fp32.ir)
    options = request.options.to_dict()
    keep = kept_nodes(exported, cone, keep_float_entries(options), with_edges=False)
    # the default int8 rule on the cone graph (its ir for quantizing, then the default's ir kept)
    cone_fp32 = base.Lowered(model=b"", io=fp32.io, layers=[], lowering=lowering, ir=exported)
    return replace(_int8(request, cone_fp32, options, keep, module=cone), ir=fp32.ir)
