"""The int4 fine-tune fakes the rounding the x86 int4 exporter applies, value for value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgecomp.qat import fake_quantize

pytest.importorskip("onnx", reason="onnx missing (pip install 'edgecomp[onnx]')")

from edgecomp.targets.onnx.int4 import (  # noqa: E402
    CLIP_RATIOS,
    block_quantize,
    channel_quantize,
)


@pytest.mark.parametrize("shape", [(8, 20, 3), (96, 32), (12, 5)])
@pytest.mark.parametrize("group", [None, 16, 4])
@pytest.mark.parametrize("search", [True, False])
def test_int4_fake_quant_equals_the_exported_weights(shape, group, search):
    # setup: a Conv1d [out, in, k], a recurrent gate matrix and a short Linear
    weight = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    weight[0] *= 40  # one channel far larger than the others
    w = weight.numpy()
    # execute
    ratios = CLIP_RATIOS if search else (1.0,)  # int4_rounding "search" / "max"
    faked = fake_quantize(weight, 4, group, search=search).detach().numpy()
    if group is None:
        q, scales = channel_quantize(w, 0, ratios)
        exported = q * scales.astype(np.float32).reshape(-1, *([1] * (w.ndim - 1)))
    else:
        q, scales = block_quantize(w, 1, group, ratios)
        step = np.repeat(scales.astype(np.float32), group, axis=1)[:, : shape[1]]
        exported = q * step
    # assert
    assert np.array_equal(faked, exported)


def test_fake_quant_passes_the_gradient_straight_through():
    # setup
    weight = torch.randn(6, 9, requires_grad=True)
    # execute
    fake_quantize(weight, 4, 4).sum().backward()
    # assert
    assert torch.equal(weight.grad, torch.ones_like(weight))
