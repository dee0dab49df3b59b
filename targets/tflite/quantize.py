"""Quantization with ai-edge-quantizer: one recipe per precision, min-max calibration.

- ``int8``: full integer, int8 weights (per channel) and int8 activations, graph input and output
  included; activation ranges are the min and max over every calibration window.
- ``int8-dynamic``: int8 weights per channel, activations quantized at run time by the kernel.
- ``int4``: int4 weights, activations quantized at run time by the kernel. A FULLY_CONNECTED
  layer's weights get one scale per group of inputs (option ``int4_group_size``: "auto" picks
  per layer the largest of 128, 64, 32 that splits its inputs into at least two groups, else
  one group of all its inputs when they are 32, 64 or 128: the scales of per-channel weights,
  stored blockwise as float16 without the per-channel int64 zero points the schema needs); other
  layers, and layers whose inputs no group size divides, keep one scale per output channel
  (ai-edge-quantizer's blockwise int4 is for FULLY_CONNECTED only, in blocks of 32 to 256).

ai-edge-quantizer's calibrator keeps a moving average (0.95) of per-window minima and maxima by
default, which clips the tails (about +-1.9 std on the traffic data): we pass its min_max_update.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecomp.targets.base import TargetError, layer_list

from .convert import SIGNATURE, first_line, quiet
from .graph import EDGES, Graph, Layer

CALIBRATIONS = ("minmax", "moving-average", "dynamic")
GROUP_SIZES = (256, 128, 64, 32)  # ai-edge-quantizer's BLOCKWISE_<n>
AUTO_GROUPS = (128, 64, 32)
GRANULARITIES = ("channelwise", "tensorwise")
RECIPES = {
    "int8": {"mode": "static", "weight_bits": 8, "activation_bits": 8},
    "int8-dynamic": {"mode": "dynamic", "weight_bits": 8},
    "int4": {"mode": "dynamic", "weight_bits": 4},
}
_EDGE_REASONS = {
    "input": "input layer kept in float (option keep_float: 'input')",
    "output": "output layer kept in float (option keep_float: 'output'): its rounding lands "
    "directly in the forecast",
}
INT8_REASON = (
    "dynamic range: int8 weights (per channel), activations quantized at run time by the "
    "kernel; int8 in an int4 build (option keep_int8: {entry!r})"
)


@dataclass(frozen=True)
class QuantSettings:
    """Quantization settings read from the profile's options (overridable per build).

    Attributes:
        keep_float: Layers left in float: "input", "output" (the graph's edges), layer names
            and record ranges (``head``, ``rnn[3]``, ``rnn[1..7]``), fnmatch patterns over them
            (``blocks.0.*``) or TFLite op types (``CONV_2D``). A name or pattern that matches
            no layer is an error.
        keep_int8: int4 builds only: layers whose weights are int8 (per channel, activations
            quantized at run time) instead of int4, named as in ``keep_float``; a layer in
            both stays float.
        calibration: "minmax" (default: min and max over all windows), "moving-average"
            (ai-edge-quantizer's default, for comparison) or "dynamic": int8 weights per channel
            with activations quantized per row at run time by the kernel (the recipe of
            "int8-dynamic", float input and output; for data whose activation ranges one static
            scale cannot hold, e.g. a spiky feature beside smooth ones).
        weight_granularity: Weights of full int8 ("int8"): "channelwise" (default: one scale
            per output channel) or "tensorwise" (one per weight tensor: smaller file, coarser
            weights). Dynamic int8 and int4 weights are always channelwise (XNNPACK's qc8w /
            qc4w kernels).
        int4_group_size: int4 FULLY_CONNECTED weights: "auto" (per layer, see the module
            docstring), "channel" (one scale per output channel, float32, with int64 zero
            points) or one of 32, 64, 128, 256 (used where it divides the layer's inputs).
    """

    keep_float: tuple[str, ...] = ()
    calibration: str = "minmax"
    weight_granularity: str = "channelwise"
    int4_group_size: str = "auto"
    keep_int8: tuple[str, ...] = ()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> QuantSettings:
        """Pick the known keys of ``options``; raise TargetError naming a bad one."""
        keep, int8 = (_layer_list(options, key) for key in ("keep_float", "keep_int8"))
        calibration = options.get("calibration", "minmax")
        if calibration not in CALIBRATIONS:
            raise TargetError(
                f"tflite: option 'calibration' must be one of {list(CALIBRATIONS)}; "
                f"got {calibration!r}"
            )
        granularity = options.get("weight_granularity", "channelwise")
        if granularity not in GRANULARITIES:
            raise TargetError(
                f"tflite: option 'weight_granularity' must be one of {list(GRANULARITIES)}; "
                f"got {granularity!r}"
            )
        group = str(options.get("int4_group_size", "auto"))
        if group not in ("auto", "channel", *map(str, GROUP_SIZES)):
            raise TargetError(
                f"tflite: option 'int4_group_size' must be 'auto', 'channel' or one of "
                f"{list(GROUP_SIZES)}; got {options.get('int4_group_size')!r}"
            )
        return cls(tuple(keep), calibration, granularity, group, tuple(int8))

    def groups(self, graph: Graph, layers: list[Layer], kept: dict[str, str]) -> dict[str, int]:
        """Layer name -> int4 group size, for the FULLY_CONNECTED layers that get groups."""
        if self.int4_group_size == "channel":
            return {}
        sizes = AUTO_GROUPS if self.int4_group_size == "auto" else (int(self.int4_group_size),)
        chosen = {}
        for layer in layers:
            shape = graph.shapes[layer.op.inputs[1]]
            if layer.op.op_type != "FULLY_CONNECTED" or layer.name in kept or len(shape) != 2:
                continue
            one_group = shape[1] if shape[1] in sizes else 0  # per channel, stored blockwise
            size = next((n for n in sizes if shape[1] % n == 0 and shape[1] >= 2 * n), one_group)
            if size:
                chosen[layer.name] = size
        return chosen

    def kept(self, graph: Graph, layers: list[Layer]) -> dict[str, str]:
        """Layer name -> why it stays float, for every entry of ``keep_float``."""
        kept: dict[str, str] = {}
        for entry in self.keep_float:
            if entry in EDGES:  # as in the onnx backend, an edge without layers is no error
                kept |= dict.fromkeys(graph.edge_layers(layers, entry), _EDGE_REASONS[entry])
                continue
            reason = f"kept in float (option keep_float: {entry!r})"
            names = _matching("keep_float", entry, layers)
            kept |= {name: kept.get(name, reason) for name in names}
        return kept

    def int8(
        self, graph: Graph, layers: list[Layer], kept: dict[str, str], precision: str
    ) -> dict[str, str]:
        """Layer name -> why its weights are int8, for every entry of ``keep_int8`` (layers in
        ``kept`` stay float).

        Raises:
            TargetError: ``keep_int8`` at a precision other than int4, or an entry that
                matches no layer (names the entry and lists the layers).
        """
        if self.keep_int8 and precision != "int4":
            raise TargetError(
                f"tflite: option 'keep_int8' is for precision int4 only (it moves int4 layers "
                f"to int8); got precision {precision!r} with keep_int8 {list(self.keep_int8)}"
            )
        int8: dict[str, str] = {}
        for entry in self.keep_int8:
            found = (
                graph.edge_layers(layers, entry)
                if entry in EDGES
                else _matching("keep_int8", entry, layers)
            )
            int8 |= {n: int8.get(n, INT8_REASON.format(entry=entry)) for n in found}
        return {name: reason for name, reason in int8.items() if name not in kept}

    def effective(self, precision: str) -> str:
        """The recipe that quantizes ``precision``: "int8-dynamic" for int8 with calibration
        "dynamic", else ``precision``."""
        return (
            "int8-dynamic" if precision == "int8" and self.calibration == "dynamic" else precision
        )

    def granularity(self, precision: str) -> str:
        """The weight granularity used at ``precision``."""
        return self.weight_granularity if precision == "int8" else "channelwise"

    def lowering(self, precision: str, n_windows: int) -> dict[str, Any]:
        """The settings as recorded in the manifest's recipe."""
        return {
            "tool": "ai-edge-quantizer",
            "recipe": RECIPES[precision],
            **dataclasses.asdict(self),
            "weight_granularity": self.granularity(precision),
            "keep_float": list(self.keep_float),
            "keep_int8": list(self.keep_int8),
            "n_calibration_windows": n_windows,
        }

    def lowering_int4(
        self, groups: dict[str, int], n_layers: int, int8: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """The int4 group record: the option, how many layers got each group size and which
        layers are int8 (option ``keep_int8``)."""
        counts = {str(n): sum(1 for g in groups.values() if g == n) for n in set(groups.values())}
        int8 = int8 or {}
        return {
            "int4_group_size": self.int4_group_size,
            "int4_groups": counts | {"channel": n_layers - len(groups) - len(int8)},
            "int8_layers": sorted(int8),
        }


def request_settings(request: Any) -> QuantSettings:
    """The quantization settings of a build request (its target options)."""
    return QuantSettings.from_options(request.options.to_dict())


def _layer_list(options: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """Option ``key``: a list of non-empty strings; raise TargetError naming the option."""
    return layer_list(options, key, "tflite: option", list(EDGES))


def _matching(option: str, entry: str, layers: list[Layer]) -> list[str]:
    """Names of the layers ``entry`` of ``option`` matches; raise TargetError if none."""
    names = [la.name for la in layers if _matches(entry, la)]
    if not names:
        raise TargetError(
            f"tflite: {option} entry {entry!r} matches no layer; layers: "
            f"{[la.name for la in layers]}"
        )
    return names


def _matches(pattern: str, layer: Layer) -> bool:
    """Exact name, a record's range ``rnn[1..7]``, or fnmatch over the name, its module
    (``rnn`` matches ``rnn[3]``) or the op type."""
    base, _, index = layer.name.partition("[")
    span = re.fullmatch(r"(.+)\[(\d+)\.\.(\d+)\]", pattern)
    if span and index:
        low, high, at = int(span[2]), int(span[3]), int(index.rstrip("]"))
        return span[1] == base and low <= at <= high
    return layer.name == pattern or any(
        fnmatch.fnmatchcase(name, pattern) for name in (layer.name, base, layer.op.op_type)
    )


def quantize(
    model: bytes,
    precision: str,
    windows: np.ndarray | None,
    settings: QuantSettings,
    kept_scopes: list[str],
    grouped: dict[str, int] | None = None,
) -> bytes:
    """Quantize fp32 .tflite bytes to ``precision``; ops whose scope is in ``kept_scopes`` stay
    float. ``windows`` (scaled [N, L, F]) calibrate the static recipe. int4: ops whose scope is
    in ``grouped`` get group-wise weights of that many inputs per scale, or int8 weights per
    channel where that is 0 (option keep_int8).

    Raises:
        TargetError: ai-edge-quantizer failed (its first line is in the message).
    """
    from ai_edge_quantizer import quantizer

    manager = _recipe(precision, kept_scopes, settings.granularity(precision), grouped or {})
    try:
        with quiet():
            engine = quantizer.Quantizer(model, manager.get_quantization_recipe())
            ranges = (
                _calibrate(model, manager, windows, settings) if engine.need_calibration else None
            )
            return bytes(engine.quantize(ranges, enable_progress_report=False).quantized_model)
    except TargetError:
        raise
    except Exception as exc:  # the quantizer raises ValueError, RuntimeError, KeyError...
        raise TargetError(
            f"tflite: ai-edge-quantizer failed for {precision}: {first_line(exc)}"
        ) from exc


def check_scales(final: bytes, source: bytes, layers: list[Layer]) -> None:
    """Refuse an int4 model whose float16 group scales overflowed (LiteRT refuses an inf scale
    only when the file is loaded).

    ai-edge-quantizer stores a blockwise int4 weight's scales as float16 (largest 65504), from
    the group's largest magnitude / 7 rounded to a 7-bit mantissa; past that they become inf.

    Args:
        final: The quantized model.
        source: The fp32 model it was quantized from (for the weight's magnitude).
        layers: The compute layers of ``source``.

    Raises:
        TargetError: Naming the first layer with a non-finite scale and its largest weight.
    """
    from .graph import Graph

    model, graph = _flat(final), Graph(final)
    by_scope = {op.scope: op for op in graph.ops}
    for layer in layers:
        op = by_scope.get(layer.op.scope)
        scales = None if op is None else _block_scales(model, op.inputs[1])
        if scales is None or np.isfinite(scales).all():
            continue
        peak = np.abs(_tensor(_flat(source), layer.op.inputs[1], np.float32)).max(initial=0)
        raise TargetError(
            f"tflite: int4 layer '{layer.name}': {int((~np.isfinite(scales)).sum())} of its "
            f"{scales.size} group scales overflow float16 (a weight of magnitude {peak:.3g} "
            f"needs a scale above 65504); keep it in float (option keep_float), int8 (option "
            f"keep_int8) or give it per-channel float32 scales (int4_group_size channel)"
        )


def _flat(model: bytes) -> Any:
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(model))


def _block_scales(model: Any, index: int) -> np.ndarray | None:
    """The float16 scales of tensor ``index`` of the main subgraph if it is blockwise."""
    from ai_edge_litert import schema_py_generated as schema

    quant = model.subgraphs[0].tensors[index].quantization
    if quant is None or quant.detailsType != schema.QuantizationDetails.BlockwiseQuantization:
        return None
    return _tensor(model, quant.details.scales, np.float16)


def _tensor(model: Any, index: int, dtype: Any) -> np.ndarray:
    """The constant data of tensor ``index`` of the main subgraph as ``dtype``."""
    buffer = model.buffers[model.subgraphs[0].tensors[index].buffer]
    return np.frombuffer(bytes(bytearray(buffer.data if buffer.data is not None else [])), dtype)


def _recipe(
    precision: str, kept_scopes: list[str], granularity: str, grouped: dict[str, int]
) -> Any:
    from ai_edge_quantizer import algorithm_manager, qtyping, recipe_manager

    every = qtyping.TFLOperationName.ALL_SUPPORTED
    recipe = RECIPES[precision]
    per = qtyping.QuantGranularity[granularity.upper()]
    manager = recipe_manager.RecipeManager()
    if recipe["mode"] == "static":
        bits = (recipe["activation_bits"], recipe["weight_bits"])
        manager.add_static_config(".*", every, *bits, per)
    else:
        manager.add_dynamic_config(".*", every, recipe["weight_bits"], per)
        for scope, size in grouped.items():  # size 0: int8 per channel (keep_int8)
            block = qtyping.QuantGranularity[f"BLOCKWISE_{size}" if size else "CHANNELWISE"]
            bits = recipe["weight_bits"] if size else 8
            manager.add_dynamic_config(f"^{re.escape(scope)}$", every, bits, block)
    for scope in kept_scopes:  # later entries win: these ops stay float
        manager.add_quantization_config(
            f"^{re.escape(scope)}$",
            every,
            algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE,
        )
    return manager


def _calibrate(
    model: bytes, manager: Any, windows: np.ndarray | None, settings: QuantSettings
) -> dict[str, Any]:
    from ai_edge_quantizer import calibrator
    from ai_edge_quantizer.utils import qsv_utils

    from .convert import signature_names

    if windows is None:
        raise TargetError("tflite: precision 'int8' needs calibration windows; got none")
    update = {"minmax": qsv_utils.min_max_update, "moving-average": None}[settings.calibration]
    options = {} if update is None else {"qsv_update_func": update}
    calib = calibrator.Calibrator(model, num_threads=1, **options)
    name = signature_names(model)[0]
    samples = [{name: window[None]} for window in windows.astype(np.float32)]
    calib.calibrate({SIGNATURE: samples}, manager)
    return calib.get_model_qsvs()
