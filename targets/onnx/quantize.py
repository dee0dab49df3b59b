"""int8 for ONNX Runtime on x86: one quantization rule per op type (see README.md).

LSTM -> dynamic int8 (DynamicQuantizeLSTM); Conv/Gemm/MatMul -> static QDQ calibrated on windows,
with a Relu right after one folded into its output quantization; GRU -> float compute (ONNX Runtime
has no GRU quantizer) with its W and R stored int8, one scale per output row, behind Cast -> Mul
(weight-only: ORT's constant folding expands them to float32 once, at load). In recurrent models
(LSTM/GRU) the Gemm/MatMul layers are dynamic int8 too: the head runs once per forecast on one
hidden vector, where a static Q/DQ pair cost 2-3 us more at batch 1 than ORT's dynamic
MatMulInteger (benchmarks/x86_compare.py). The dynamic step runs first: it rewrites Gemm as
MatMul + Add, which the static step then quantizes with constant, pre-transposed weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from edgecomp.targets.base import TargetError, layer_list

from .boundary import REASONS, _input_layers, boundary_layers, heavy_tailed_input
from .export import INPUT_NAME

DYNAMIC_OPS = ("LSTM",)
STATIC_OPS = ("Conv", "Gemm", "MatMul")
RECURRENT_OPS = ("LSTM", "GRU")
RECURRENT_DYNAMIC_OPS = ("Gemm", "MatMul")  # dynamic, not static, in a recurrent model
FOLDED_OPS = ("Relu",)  # after a quantized op: ORT drops it, the output's zero point clips at 0
FLOAT_OPS = {"GRU": "ONNX Runtime has no GRU quantizer"}
STORED_OPS = {"GRU": (1, 2)}  # float compute, int8 storage of these inputs (W, R)
STORAGE_METHOD = "int8-storage"
STORAGE_NOTE = (
    "weight-only int8: W and R stored int8 with one float32 scale per output row behind Cast -> "
    "Mul, which the engine's constant folding expands to float32 at load; the GRU computes in "
    "float32 (ONNX Runtime has no int8 GRU kernel)"
)
MAX_CALIBRATION_WINDOWS = 512
INPUT_CLIP = 1e-3  # heavy-tailed inputs: the input layers' range leaves out this much at each end
# (chosen on validation: weather TCN int8 +0.61 % at 1e-3, +0.80 % at 1e-4, +1.06 % at 1e-5)
_CALIBRATION_BATCH = 32
_QTYPES = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
_METHODS = {
    "minmax": ("MinMax", CalibrationMethod.MinMax),
    "entropy": ("Entropy", CalibrationMethod.Entropy),
    "percentile": ("Percentile", CalibrationMethod.Percentile),
}
_CHOICES = {
    "activation_type": tuple(_QTYPES),
    "weight_type": tuple(_QTYPES),
    "calibration_method": tuple(_METHODS),
    "per_channel": (False, True),
    "reduce_range": (False, True),
}


def keep_float_entries(options: dict[str, Any]) -> tuple[str, ...]:
    """The option's entries, checked to be a list of non-empty strings."""
    return layer_list(options, "keep_float", "onnx: profile option", sorted(REASONS))


@dataclass(frozen=True)
class Int8Settings:
    """int8 settings, read from the target profile's options.

    Attributes:
        activation_type: "uint8" or "int8" for static QDQ activations.
        weight_type: "int8" or "uint8" for static QDQ weights (LSTM weights are always int8).
        per_channel: Per-output-channel weight scales instead of one per tensor.
        reduce_range: 7-bit weights (avoids overflow of u8*s8 sums on CPUs without VNNI).
        calibration_method: "minmax" (default), "entropy" or "percentile".
        keep_float: Layers left in float: "input" (the layers reading the model input),
            "output" (the layer making the forecast), or layer names / patterns / op types
            (resolved by keep.py and passed to ``quantize_int8`` as ``keep``).
        max_input_ratio: When the widest input feature spans more than this many times the
            median feature's range (heavy-tailed inputs such as rain, or a sensor fault), the
            statically quantized input layers get a clipped input range (``INPUT_CLIP``)
            instead of the calibration min-max; 0 turns the check off.
    """

    activation_type: str = "uint8"
    weight_type: str = "int8"
    per_channel: bool = False
    reduce_range: bool = False
    calibration_method: str = "minmax"
    keep_float: tuple[str, ...] = ()
    max_input_ratio: float = 8.0

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Int8Settings:
        """Pick the known keys of ``options``; raise TargetError naming a bad one."""
        names = {f.name for f in dataclasses.fields(cls)}
        settings = cls(**{k: v for k, v in options.items() if k in names})
        for name, choices in _CHOICES.items():
            value = getattr(settings, name)
            if type(value) is not type(choices[0]) or value not in choices:
                raise TargetError(
                    f"onnx: profile option '{name}' must be one of {list(choices)}; got {value!r}"
                )
        edges = keep_float_entries(options)
        ratio = settings.max_input_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or ratio < 0:
            raise TargetError(
                f"onnx: profile option 'max_input_ratio' must be a number >= 0; got {ratio!r}"
            )
        return dataclasses.replace(settings, keep_float=tuple(edges))

    def describe(self, n_windows: int) -> str:
        """Reason recorded on statically quantized layers."""
        granularity = "per-channel" if self.per_channel else "per-tensor"
        method = _METHODS[self.calibration_method][0]
        return f"static QDQ {granularity}, {method} over {n_windows} calibration windows"

    def lowering(self, n_windows: int) -> dict[str, Any]:
        """The settings as recorded in the manifest's recipe."""
        rules = {
            **dict.fromkeys(DYNAMIC_OPS, "dynamic"),
            **dict.fromkeys(STATIC_OPS, "static-qdq"),
            **{f"{op} (recurrent model)": "dynamic" for op in RECURRENT_DYNAMIC_OPS},
            **dict.fromkeys(FOLDED_OPS, "folded into the preceding op's output QDQ"),
            **dict.fromkeys(FLOAT_OPS, "fp32"),
            **dict.fromkeys(STORED_OPS, "fp32 compute, int8 weight storage"),
        }
        return {
            "tool": "onnxruntime.quantization",
            "rules": rules,
            "quant_format": "QDQ",
            **dataclasses.asdict(self),
            "keep_float": list(self.keep_float),
            "n_calibration_windows": n_windows,
        }


def select_windows(windows: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` windows spread evenly over ``windows`` (kept in order)."""
    if len(windows) <= limit:
        return windows
    return windows[np.linspace(0, len(windows) - 1, limit).round().astype(int)]


@dataclass(frozen=True)
class Int8Graph:
    """What quantize_int8 produced.

    Attributes:
        proto: The quantized graph.
        steps: The ONNX Runtime steps that ran, in order.
        kept_float: Name of a node left in float on purpose -> why.
        stored: Names of the nodes (``STORED_OPS``) whose weights are stored int8, computed float.
    """

    proto: onnx.ModelProto
    steps: list[str]
    kept_float: dict[str, str]
    stored: list[str] = dataclasses.field(default_factory=list)


def quantize_int8(
    proto: onnx.ModelProto,
    windows: np.ndarray,
    settings: Int8Settings,
    features: list[str] | None = None,
    keep: dict[str, str] | None = None,
) -> Int8Graph:
    """Quantize an fp32 graph by the per-op rules; ``windows`` calibrate the static part.

    ``keep`` names nodes left in float (-> why) besides the edges in ``settings.keep_float``.
    """
    ops = {node.op_type for node in proto.graph.node}
    recurrent = bool(ops.intersection(RECURRENT_OPS))
    dynamic = [*DYNAMIC_OPS, *(RECURRENT_DYNAMIC_OPS if recurrent else ())]
    static = [op for op in STATIC_OPS if op not in dynamic]
    with tempfile.TemporaryDirectory(prefix="edgecomp-onnx-") as tmp, _quiet():
        path = Path(tmp) / "fp32.onnx"
        onnx.save(proto, path)
        steps = ["quant_pre_process"]
        path = _step(steps[-1], quant_pre_process, path)
        kept = boundary_layers(onnx.load(path), settings.keep_float, dynamic) | (keep or {})
        # ORT's dynamic quantizer splits a Gemm into "<name>_MatMul" + Add before it quantizes
        kept |= {f"{name}_MatMul": why for name, why in kept.items()}
        if ops.intersection(dynamic):
            steps.append("quantize_dynamic")
            options = _dynamic_options(settings, dynamic, exclude=list(kept))
            path = _step(steps[-1], quantize_dynamic, path, **options)
        current = onnx.load(path)
        kept |= boundary_layers(current, settings.keep_float, static)
        overrides, clipped = _input_overrides(current, settings, windows, features, static, kept)
        if clipped:
            steps.append(clipped)
        if any(n.op_type in static and n.name not in kept for n in current.graph.node):
            steps.append("quantize_static")
            options = _static_options(settings, windows, static, exclude=list(kept))
            options["extra_options"] = {"TensorQuantOverrides": overrides}
            path = _step(steps[-1], quantize_static, path, **options)
        final = onnx.load(path)
        stored = store_int8_weights(final.graph, kept)
        if stored:
            steps.append(f"int8 weight storage, compute float: {sorted(stored)}")
        return Int8Graph(final, steps, kept, stored)


def store_int8_weights(graph: onnx.GraphProto, kept: Mapping[str, str]) -> list[str]:
    """Store the weights of ``STORED_OPS`` nodes not in ``kept`` as int8, in place.

    Each weight becomes an int8 initializer (symmetric, one float32 scale per output row) read
    through ``Cast`` -> ``Mul``: plain constant arithmetic that ONNX Runtime (and OpenVINO)
    fold back to a float32 initializer when the session loads, so the op runs as before. A
    ``DequantizeLinear`` in its place is not folded by ONNX Runtime unless the session turns its
    QDQ fusions off, and then ran on every call (+35 % at batch 1 on the traffic GRU). Only
    weights that one node alone reads are converted.

    Returns:
        The names of the nodes whose weights are now int8.
    """
    from onnx import helper, numpy_helper

    inits = {init.name: init for init in graph.initializer}
    uses = Counter(name for node in graph.node for name in node.input)
    stored, added = [], []
    for node in graph.node:
        slots = STORED_OPS.get(node.op_type, ())
        names = [node.input[i] if i < len(node.input) else "" for i in slots]
        if not slots or node.name in kept or not all(n in inits and uses[n] == 1 for n in names):
            continue
        for slot, name in zip(slots, names, strict=True):
            q, scale = int8_rows(numpy_helper.to_array(inits[name]))
            graph.initializer.remove(inits[name])
            graph.initializer.extend(
                [
                    numpy_helper.from_array(q, f"{name}_int8"),
                    numpy_helper.from_array(scale, f"{name}_scale"),
                ]
            )
            cast = helper.make_node("Cast", [f"{name}_int8"], [f"{name}_cast"], to=1)
            mul = helper.make_node("Mul", [f"{name}_cast", f"{name}_scale"], [f"{name}_stored"])
            cast.name, mul.name = f"{name}_Cast", f"{name}_Mul"
            added += [cast, mul]
            node.input[slot] = mul.output[0]
        stored.append(node.name)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(added + nodes)  # constants first: the graph stays topologically sorted
    return stored


def int8_rows(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 of ``weight`` [..., rows, inputs] with one float32 scale per row:
    (int8 values in [-127, 127], scales shaped [..., rows, 1])."""
    weight = np.asarray(weight, dtype=np.float32)
    peak = np.abs(weight).max(axis=-1, keepdims=True)
    scale = np.where(peak > 0, peak / 127, 1.0).astype(np.float32)
    q = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
    return q, scale


def _input_overrides(
    proto: onnx.ModelProto,
    settings: Int8Settings,
    windows: np.ndarray,
    features: list[str] | None,
    ops: list[str],
    kept: dict[str, str],
) -> tuple[dict[str, list[dict[str, Any]]], str]:
    """A clipped quantization range for the inputs of the static input layers when the inputs
    are heavy-tailed (``max_input_ratio``): the range of all but the ``INPUT_CLIP`` fraction of
    calibration input values at each end, so that a few readings far out (a sensor fault, a
    storm) do not take most of the 256 levels from every other feature; the layers stay int8.
    Returns ORT's TensorQuantOverrides and the step to record ("" when none)."""
    if "input" in settings.keep_float or not settings.max_input_ratio:
        return {}, ""
    why = heavy_tailed_input(windows, settings.max_input_ratio, features)
    if why is None:
        return {}, ""
    low = float(np.quantile(windows, INPUT_CLIP, method="higher"))  # the extremes are left out
    high = float(np.quantile(windows, 1 - INPUT_CLIP, method="lower"))  # even of a few windows
    nodes = {n.name: n for n in proto.graph.node}
    layers = [nodes[n] for n in _input_layers(proto.graph, tuple(ops)) if n not in kept]
    range_ = {"rmin": np.float32(min(low, 0.0)), "rmax": np.float32(max(high, 0.0))}
    overrides = {node.input[0]: [dict(range_)] for node in layers}
    step = (
        f"input range clipped to [{low:.3g}, {high:.3g}] (all but {INPUT_CLIP:.2%} of calibration "
        f"values at each end) for {sorted(n.name for n in layers)}: {why.split(': ', 1)[1]}"
    )
    return overrides, step if overrides else ""


def _dynamic_options(
    settings: Int8Settings, ops: list[str], *, exclude: list[str]
) -> dict[str, Any]:
    return {
        "op_types_to_quantize": ops,
        "nodes_to_exclude": exclude,
        "weight_type": QuantType.QInt8,
        "per_channel": settings.per_channel,
        "reduce_range": settings.reduce_range,
    }


def _static_options(
    settings: Int8Settings, windows: np.ndarray, ops: list[str], *, exclude: list[str]
) -> dict[str, Any]:
    return {
        "nodes_to_exclude": exclude,
        "calibration_data_reader": _WindowReader(windows),
        "quant_format": QuantFormat.QDQ,
        "op_types_to_quantize": [*ops, *FOLDED_OPS],
        "activation_type": _QTYPES[settings.activation_type],
        "weight_type": _QTYPES[settings.weight_type],
        "per_channel": settings.per_channel,
        "reduce_range": settings.reduce_range,
        "calibrate_method": _METHODS[settings.calibration_method][1],
    }


class _WindowReader(CalibrationDataReader):
    """Batches of equal size: ORT's histogram calibrators (entropy, percentile) fail otherwise.

    The last batch is topped up with the first windows again, which leaves MinMax ranges as
    they are and shifts histograms by at most one batch's worth of repeats.
    """

    def __init__(self, windows: np.ndarray) -> None:
        size = min(len(windows), _CALIBRATION_BATCH)
        padded = np.concatenate([windows, windows[: -len(windows) % size]])
        self._batches = iter(np.split(padded, len(padded) // size))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def _step(name: str, function: Any, source: Path, **kwargs: Any) -> Path:
    output = source.with_name(f"{name}.onnx")
    try:
        function(source, output, **kwargs)
    except Exception as exc:  # ORT raises many types; name the step and keep the cause
        raise TargetError(f"onnx: int8 {name} failed: {str(exc).strip()[:300]}") from exc
    return output


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence ORT's advisory output: root-logger warnings ("already quantized", pre-processing
    hints) and the histogram calibrators' progress prints."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
