"""A batch-1 .tflite pinned to a static batch of N windows, so one invoke runs N windows.

litert-torch converts at a fixed batch of one (its dynamic-shape path rejects symbolic dimensions)
and a model whose batch is left symbolic (-1) loses most of XNNPACK's speed on LiteRT (measured:
README). So the artifact keeps its fast batch-1 graph and the engine makes a static batch-N copy
of it on first use: every activation tensor with a leading 1 gets N, and so does the leading entry
of every RESHAPE target, SLICE size and STRIDED_SLICE end on the batch path (a STRIDED_SLICE there
must start at row 0 with stride 1 and leave axis 0 in place: no ellipsis or new axis, axis 0 not
shrunk). Only graphs made of ops whose batch handling is known are pinned (``pin_batch`` returns
None otherwise); the build checks that the pinned copy gives what one invoke per window gives
before it records ``batch_rows``.

Uses ``ai_edge_litert.tools.flatbuffer_utils`` (ai-edge-litert and its ``flatbuffers``
dependency); no torch, no edgecomp.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# ops that act on each batch row alone, given that their axis / perm operands leave axis 0 alone
ROW_WISE = frozenset(
    {
        "ADD", "SUB", "MUL", "DIV", "LOGISTIC", "TANH", "RELU", "RELU6", "MAXIMUM", "MINIMUM",
        "FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "QUANTIZE", "DEQUANTIZE", "PAD",
        "TRANSPOSE", "CONCATENATION", "PACK", "GATHER", "MEAN", "SUM", "SQUARE", "SQRT", "RSQRT",
        "EXP", "NEG", "ABS", "HARD_SWISH", "GELU", "LEAKY_RELU", "SOFTMAX", "MAX_POOL_2D",
        "AVERAGE_POOL_2D",
    }
)  # fmt: skip
_AXIS_OPTION = ("CONCATENATION", "PACK", "GATHER")  # builtin option ``axis``
_REDUCE = ("MEAN", "SUM")  # axes in input 1
_AXIS_MASKS = ("ellipsisMask", "newAxisMask")  # StridedSliceOptions that may move axis 0
_INT64 = 4  # schema TensorType.INT64


def pin_batch(model: bytes, rows: int) -> bytes | None:
    """``model`` (batch 1) with a static batch of ``rows`` windows, or None when its graph has an
    op whose batch handling is unknown or that mixes the batch with another axis."""
    from ai_edge_litert.tools import flatbuffer_utils

    flat = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    if len(flat.subgraphs) != 1 or not _Pinner(flat, rows).pin():
        return None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(flat))


class _Pinner:
    def __init__(self, flat: Any, rows: int) -> None:
        from ai_edge_litert import schema_py_generated as schema

        self.flat, self.rows = flat, rows
        self.graph = flat.subgraphs[0]
        names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        self.codes = [
            names.get(max(c.builtinCode, c.deprecatedBuiltinCode), "?") for c in flat.operatorCodes
        ]
        self._buffer_type = schema.BufferT
        self._pinned: set[int] = set()

    def pin(self) -> bool:
        tensors = self.graph.tensors
        if any(tensors[i].shape[0] != 1 for i in self.graph.inputs):
            return False
        for op in self.graph.operators:
            if not self._pin_op(self.codes[op.opcodeIndex], op):
                return False
        for tensor in tensors:  # activations (no data) with a leading batch of 1
            shape = [] if tensor.shape is None else list(tensor.shape)
            if shape and shape[0] == 1 and self._data(tensor) is None:
                tensor.shape = [self.rows, *shape[1:]]
                tensor.shapeSignature = None
        return True

    def _pin_op(self, code: str, op: Any) -> bool:
        first = self.graph.tensors[op.inputs[0]]
        if self._data(first) is not None or not len(first.shape) or first.shape[0] != 1:
            return code in ROW_WISE or code in ("RESHAPE", "SLICE", "STRIDED_SLICE")  # off the path
        if code == "RESHAPE":
            return self._leading(op.inputs[1]) and self._reshape_option(op)
        if code == "SLICE":
            return self._const(op.inputs[1])[0] == 0 and self._leading(op.inputs[2])
        if code == "STRIDED_SLICE":
            return self._strided_rows(op)
        return code in ROW_WISE and self._keeps_axis0(code, op)

    def _strided_rows(self, op: Any) -> bool:
        """A STRIDED_SLICE that keeps every row: begin 0, stride 1, end 1 (pinned to ``rows``),
        no ellipsis or new axis (which would move axis 0), axis 0 not shrunk."""
        options = op.builtinOptions
        moves = [getattr(options, name, 0) for name in _AXIS_MASKS] + [
            getattr(options, "shrinkAxisMask", 0) & 1,
            getattr(options, "offset", False),
        ]
        if any(moves) or len(op.inputs) != 4:
            return False
        begin, strides = self._const(op.inputs[1]), self._const(op.inputs[3])
        if not len(begin) or begin[0] != 0 or not len(strides) or strides[0] != 1:
            return False
        return self._leading(op.inputs[2])

    def _keeps_axis0(self, code: str, op: Any) -> bool:
        if code == "TRANSPOSE":
            return int(self._const(op.inputs[1])[0]) == 0
        if code == "PAD":
            return self._const(op.inputs[1])[:2].tolist() == [0, 0]
        if code in _REDUCE:
            return 0 not in self._const(op.inputs[1]).tolist()
        if code in _AXIS_OPTION:
            return getattr(op.builtinOptions, "axis", 0) != 0
        return True

    def _reshape_option(self, op: Any) -> bool:
        shape = getattr(op.builtinOptions, "newShape", None)
        if shape is not None and len(shape):
            if shape[0] != 1:
                return False
            op.builtinOptions.newShape = [self.rows, *list(shape)[1:]]
        return True

    def _data(self, tensor: Any) -> Any:
        return self.flat.buffers[tensor.buffer].data

    def _const(self, index: int) -> np.ndarray:
        tensor = self.graph.tensors[index]
        data = self._data(tensor)
        if data is None:
            return np.array([-1])
        dtype = np.int64 if tensor.type == _INT64 else np.int32
        return np.frombuffer(bytes(data), dtype=dtype)

    def _leading(self, index: int) -> bool:
        """Give a shape operand whose leading entry is 1 a copy with ``rows`` there."""
        if index in self._pinned:  # shared by several ops: pinned once
            return True
        values = self._const(index).copy()
        if not len(values) or values[0] != 1 or (values[1:] < 0).any():
            return False
        values[0] = self.rows
        buffer = self._buffer_type()
        buffer.data = list(values.tobytes())
        self.flat.buffers.append(buffer)
        self.graph.tensors[index].buffer = len(self.flat.buffers) - 1
        self._pinned.add(index)
        return True
