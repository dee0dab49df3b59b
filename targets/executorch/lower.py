"""torch.export -> (PT2E int8, XNNPACK quantizer) -> to_edge_transform_and_lower(XNNPACK) -> .pte.

Every function imports torch and executorch inside its body: importing this module loads neither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecomp.targets.base import TargetError

if TYPE_CHECKING:
    from edgecomp.spec import Model

# torch's fake Conv1d picks a CPU conv backend from the example batch and guards the batch on
# that choice ("batch < 16" for a smaller example); ExecuTorch then plans memory for 15 windows
# and refuses a larger batch. An example batch of 16 gives the guard "batch >= 16" instead: the
# plan holds max_batch windows and XNNPACK still runs any batch from 1 (README, measured).
EXAMPLE_BATCH = 16
CALIBRATION_BATCH = 64
# ops whose weights the XNNPACK quantizer annotates (torch.export pre-dispatch names)
_WEIGHTED_OPS = ("conv1d", "conv2d", "linear", "lstm", "gru", "addmm", "mm")


@dataclass(frozen=True)
class Program:
    """A lowered ExecuTorch program.

    Attributes:
        pte: The .pte bytes.
        delegated: Number of XNNPACK delegate calls in the program.
        portable_ops: Edge ops left to ExecuTorch's portable kernels (not delegated), sorted.
        quantized: Module names whose weights the program holds in int8.
    """

    pte: bytes
    delegated: int
    portable_ops: tuple[str, ...]
    quantized: tuple[str, ...] = ()


def export(model: Model, max_batch: int) -> Any:
    """``model.module`` as a torch.export ExportedProgram, batch dynamic up to ``max_batch``
    (at least EXAMPLE_BATCH).

    Raises:
        TargetError: torch.export cannot trace the module (the first line of its error).
    """
    import torch

    spec = model.spec
    example = (torch.zeros(EXAMPLE_BATCH, spec.input_len, spec.n_features),)
    module = model.module.eval()
    try:
        with torch.no_grad():
            return torch.export.export(module, example, dynamic_shapes=_shapes(max_batch))
    except Exception as exc:  # torch.export raises many types; report one line
        raise TargetError(f"executorch: torch.export cannot trace the model: {_line(exc)}") from exc


def quantize(program: Any, windows: np.ndarray, *, per_channel: bool, max_batch: int) -> Any:
    """Static int8 (PT2E, XNNPACKQuantizer, histogram observers) calibrated on ``windows``.

    Returns:
        (the re-exported quantized program, names of the modules whose weights are int8).

    Raises:
        TargetError: Preparing, calibrating or converting failed (one line).
    """
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    config = get_symmetric_quantization_config(is_per_channel=per_channel)
    example = torch.zeros(EXAMPLE_BATCH, *windows.shape[1:])
    try:
        prepared = prepare_pt2e(program.module(), XNNPACKQuantizer().set_global(config))
        with torch.no_grad():
            for batch in calibration_batches(windows, min(CALIBRATION_BATCH, max_batch)):
                prepared(torch.from_numpy(batch))
        converted = convert_pt2e(prepared)
        quantized = _quantized_modules(converted)
        with torch.no_grad():
            exported = torch.export.export(converted, (example,), dynamic_shapes=_shapes(max_batch))
    except Exception as exc:  # torchao / torch.export raise many types; report one line
        raise TargetError(f"executorch: int8 quantization failed: {_line(exc)}") from exc
    return exported, quantized


def to_pte(program: Any, quantized: tuple[str, ...] = ()) -> Program:
    """Partition for XNNPACK, lower and serialize.

    Raises:
        TargetError: The lowering failed (one line).
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    try:
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        delegated, portable = _partition_summary(edge.exported_program())
        pte = bytes(edge.to_executorch().buffer)
    except Exception as exc:  # exir raises many types; report one line
        raise TargetError(f"executorch: lowering to XNNPACK failed: {_line(exc)}") from exc
    return Program(pte, delegated, portable, quantized)


def calibration_batches(windows: np.ndarray, size: int) -> list[np.ndarray]:
    """``windows`` in batches of ``size``, none under EXAMPLE_BATCH (the exported program's
    batch starts there): a short set is repeated, a short last batch takes earlier windows."""
    if len(windows) < EXAMPLE_BATCH:
        windows = np.concatenate([windows] * math.ceil(EXAMPLE_BATCH / len(windows)))
    batches = [windows[i : i + size] for i in range(0, len(windows), size)]
    if len(batches[-1]) < EXAMPLE_BATCH:
        batches[-1] = windows[-EXAMPLE_BATCH:]
    return [np.ascontiguousarray(batch, dtype=np.float32) for batch in batches]


def layer_records(model: Model, precision: str, program: Program) -> list[dict[str, Any]]:
    """One record per module holding weights: its precision and why."""
    records = []
    for name, module in model.module.named_modules():
        if not name or any(True for _ in module.children()) or not _has_weights(module):
            continue
        int8 = name in program.quantized
        if int8:
            reason = "XNNPACK quantizer: static int8 activations and weights (calibrated)"
        elif precision == "fp32":
            reason = "fp32 build"
        else:
            reason = f"the XNNPACK quantizer has no int8 pattern for {type(module).__name__}"
        records.append(
            {
                "name": name,
                "op_type": type(module).__name__,
                "precision": "int8" if int8 else "fp32",
                "method": "xnnpack-static" if int8 else "float",
                "reason": reason,
            }
        )
    return records


def _shapes(max_batch: int) -> Any:
    from torch.export import Dim

    return ({0: Dim("batch", min=1, max=max_batch)},)


def _has_weights(module: Any) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def _quantized_modules(converted: Any) -> tuple[str, ...]:
    """Modules whose weighted op reads its weight through a dequantize node."""
    names = set()
    for node in converted.graph.nodes:
        op = getattr(node.target, "__name__", str(node.target)).split(".")[0]
        if node.op != "call_function" or op not in _WEIGHTED_OPS or len(node.args) < 2:
            continue
        weight = node.args[1]
        if "dequantize" in str(getattr(weight, "target", "")):
            stack = node.meta.get("nn_module_stack") or {}
            if stack:
                names.add(_module_path(list(stack.values())[-1][0]))
    return tuple(sorted(names))


def _module_path(path: str) -> str:
    """ "L['self'].blocks[0].conv1" or "blocks.0.conv1" -> "blocks.0.conv1"."""
    path = path.replace("L['self'].", "").replace("L['self']", "")
    return path.replace("[", ".").replace("]", "").replace("'", "").strip(".")


def _partition_summary(edge_program: Any) -> tuple[int, tuple[str, ...]]:
    delegated, portable = 0, set()
    for node in edge_program.graph.nodes:
        if node.op != "call_function":
            continue
        name = str(node.target)
        if ": " in name:  # "<EdgeOpOverload: aten.index.Tensor>: schema = ..." -> aten.index.Tensor
            name = name.split(": ")[1].split(">")[0]
        if "executorch_call_delegate" in name:
            delegated += 1
        elif "getitem" not in name and "sym_size" not in name:
            portable.add(name)
    return delegated, tuple(sorted(portable))


def _line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
