"""The TCN receptive-cone rewrite (targets/tflite/lowering.py) and the batch pinning of the ops it
converts to (STRIDED_SLICE, MAX_POOL_2D: edgecomp_runtime/engines/litert_batch.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgecomp.models import LSTMForecaster, TCNForecaster
from edgecomp.targets.tflite.lowering import ConeTCN, cone_plan, cone_rewrites, rewrite
from helpers.testing import forecaster

CASES = [  # (features, targets, length, kernel, dilations, residual)
    (5, [0, 3], 48, 3, None, True),  # the default dilations 1, 2, 4, 8
    (4, None, 30, 3, [1, 2, 4], True),
    (3, [2], 48, 3, [1, 3, 9], True),  # dilations that are not powers of two
    (3, None, 40, 2, [2, 4], False),  # the first block reads every 2nd step
    (2, None, 17, 3, [1, 2, 4, 8, 16], True),  # a receptive field past the window
    (3, None, 48, 5, [1, 2, 4], True),
    (3, None, 12, 3, [2, 3], True),
    (3, None, 9, 2, [1], True),  # one block
    (3, None, 30, 2, [1, 9], True),  # a stride past the padding: conv2 reads a slice of h
]


def _tcn(features, targets, length, kernel, dilations, residual):
    hparams = {"channels": 6, "kernel": kernel, "dilations": dilations, "residual": residual}
    return forecaster(TCNForecaster, features, targets, length, **hparams)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"L{c[2]}-k{c[3]}-{c[4]}")
def test_the_cone_equals_the_tcn(case):
    # setup
    module = _tcn(*case)
    x = torch.randn(6, case[2], case[0])
    # execute
    cone = rewrite(module)
    # assert: the same forecast, to float rounding of the same sums (exact here)
    assert isinstance(cone, ConeTCN)
    with torch.no_grad():
        np.testing.assert_allclose(cone(x).numpy(), module(x).numpy(), rtol=0, atol=1e-6)


def test_the_cone_plan_spaces_each_block_by_the_last_steps_needs():
    # the last block needs one output; each block's input is spaced by gcd(dilation, need)
    assert cone_plan([1, 2, 4, 8]) == [(1, 2), (2, 4), (4, 8), (8, None)]
    assert cone_plan([1, 3, 9]) == [(1, 3), (3, 9), (9, None)]
    assert cone_plan([2, 3]) == [(1, 3), (3, None)]
    assert cone_plan([4]) == [(4, None)]


def test_the_cone_keeps_the_source_layer_names_and_weights():
    # setup
    module = _tcn(*CASES[0])
    # execute
    cone = rewrite(module)
    # assert: records are named after the source's layers; the weights are the source's
    ours = {name for name, _ in cone.named_parameters()}
    assert ours == {name for name, _ in module.named_parameters()}
    for name, weight in module.named_parameters():
        assert torch.equal(dict(cone.named_parameters())[name], weight)
    assert cone.blocks[1].conv1.dilation == (1,) and cone.blocks[1].conv2.stride == (2,)


def test_only_tcn_forecasters_get_the_cone():
    lstm = LSTMForecaster(3, 3, 8, 2, hidden=4)
    assert cone_rewrites(_tcn(*CASES[0])) and not cone_rewrites(lstm)
    assert not isinstance(rewrite(lstm), ConeTCN)
    assert rewrite(torch.nn.Linear(2, 2)) is None


# --- LiteRT: the converted cone, pinned to a batch --------------------------------------------


def _ops(data: bytes) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter

    return [op["op_name"] for op in Interpreter(model_content=data)._get_ops_details()]


def _run(data: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data, num_threads=1)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])


def test_the_converted_cone_pins_to_a_batch_and_matches_torch():
    pytest.importorskip("litert_torch", reason="the cone is converted with litert-torch")
    from edgecomp.targets.tflite.convert import convert_module
    from edgecomp_runtime.engines.litert_batch import pin_batch

    # setup: every feature a target (a residual of picked targets is a GATHER_ND, not pinned)
    module = _tcn(5, None, 48, 3, None, True)
    x = np.random.default_rng(1).standard_normal((5, 48, 5)).astype(np.float32)
    # execute
    data = convert_module(rewrite(module), 48, 5)
    pinned = pin_batch(data, 5)
    # assert: the skip steps are max pools (no strided slice), 5 windows in one invoke equal
    # torch and one invoke per window
    ops = _ops(data)
    assert "MAX_POOL_2D" in ops and "STRIDED_SLICE" not in ops
    assert pinned is not None
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run(pinned, x), expected, rtol=0, atol=1e-5)
    per_window = np.concatenate([_run(data, w[None]) for w in x])
    np.testing.assert_allclose(_run(pinned, x), per_window, rtol=0, atol=1e-6)


class _Strided(torch.nn.Module):
    def __init__(self, index: tuple) -> None:
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[self.index] * 2.0


@pytest.mark.parametrize(
    "index",
    [(slice(None), slice(1, None, 2)), (slice(None), slice(None), slice(0, 3, 2))],
    ids=["time", "features"],
)
def test_a_strided_slice_that_keeps_the_rows_is_pinned(index):
    pytest.importorskip("litert_torch", reason="the model is converted with litert-torch")
    from edgecomp.targets.tflite.convert import convert_module
    from edgecomp_runtime.engines.litert_batch import pin_batch

    # setup
    data = convert_module(_Strided(index).eval(), 6, 4)
    x = np.random.default_rng(2).standard_normal((3, 6, 4)).astype(np.float32)
    # execute
    pinned = pin_batch(data, 3)
    # assert
    assert "STRIDED_SLICE" in _ops(data)
    assert pinned is not None
    np.testing.assert_allclose(_run(pinned, x), x[index] * 2.0, rtol=0, atol=0)


def test_a_strided_slice_that_strides_the_batch_is_not_pinned():
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    pytest.importorskip("litert_torch", reason="the model is converted with litert-torch")
    from edgecomp.targets.tflite.convert import convert_module
    from edgecomp_runtime.engines.litert_batch import pin_batch

    # setup: a strided slice on the time axis, its axis-0 stride then made 2 (or axis 0 shrunk)
    data = convert_module(_Strided((slice(None), slice(1, None, 2))).eval(), 6, 4)
    flat = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    graph = flat.subgraphs[0]
    code = schema.BuiltinOperator.STRIDED_SLICE
    (op,) = [o for o in graph.operators if flat.operatorCodes[o.opcodeIndex].builtinCode == code]
    strides = graph.tensors[op.inputs[3]]
    values = np.frombuffer(bytes(flat.buffers[strides.buffer].data), np.int32).copy()
    values[0] = 2
    flat.buffers[strides.buffer].data = list(values.tobytes())
    strided = bytes(flatbuffer_utils.convert_object_to_bytearray(flat))
    values[0] = 1
    flat.buffers[strides.buffer].data = list(values.tobytes())
    op.builtinOptions.shrinkAxisMask = 1
    shrunk = bytes(flatbuffer_utils.convert_object_to_bytearray(flat))
    # execute / assert
    assert pin_batch(data, 3) is not None
    assert pin_batch(strided, 3) is None
    assert pin_batch(shrunk, 3) is None
