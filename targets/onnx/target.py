"""The x86 ONNX backend: torch.onnx.export -> onnxsim -> (int8 by op rule | int4) -> model.onnx."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edgecomp.targets import base

if TYPE_CHECKING:
    import onnx
    import torch

    from edgecomp.spec import Model

MODEL_FILE = "model.onnx"
QTYPES = ("uint8", "int8")  # the keys of quantize._QTYPES (that module imports onnxruntime)
METHODS = ("minmax", "entropy", "percentile")  # the keys of quantize._METHODS
ENGINES = ("auto", "onnx", "openvino", "native")  # "auto" + candidates.ENGINE_KEYS + NATIVE
# "auto" + the keys of candidates.LOWERINGS
LOWERINGS = ("auto", "default", "hoisted", "scan", "cone", "native")


def export_onnx(
    module: torch.nn.Module,
    input_len: int,
    n_features: int,
    path: str | Path,
    *,
    opset: int = 17,
    lean: bool = True,
) -> Path:
    """Export ``module`` to an fp32 ONNX file: dynamic batch, simplified, checked, shrunk.

    Args:
        module: Maps float32 [batch, input_len, n_features] to [batch, H, F_out].
        input_len: Window length L.
        n_features: Input features F.
        path: File to write (atomically).
        opset: ONNX opset of the default domain.
        lean: Thin the ops around LSTM/GRU nodes as the build does (``export.lean_recurrent``);
            False keeps the exporter's graph, simplified (what a plain export gives a peer tool).

    Returns:
        The path written. Input "window" [batch, L, F], output "forecast" [batch, H, F_out].

    Raises:
        TargetError: The exporter, the simplifier or the checker failed (names the module/op).
    """
    from .compact import shrink
    from .export import export_model, write_model

    proto = export_model(module, input_len, n_features, opset=opset, lean=lean)
    return write_model(shrink(proto), Path(path))


def count_ops(path: str | Path) -> dict[str, int]:
    """Number of nodes per op type in the main graph of the ONNX file at ``path``."""
    import onnx

    return dict(Counter(node.op_type for node in onnx.load(str(path)).graph.node))


def source_graph(model: Model, opset: int) -> onnx.ModelProto:
    """The model as ONNX: exported from torch, or the user's ONNX file when that is the source."""
    from edgecomp.frontend import OnnxSource

    from .export import export_model, import_model

    if isinstance(model.module, OnnxSource):
        return import_model(model.module.path)
    return export_model(model.module, model.spec.input_len, model.spec.n_features, opset=opset)


@dataclass(frozen=True)
class OnnxOptions(base.TargetOptions):
    """Options of an onnx profile (targets/profiles/x86-*.json), overridable per build.

    Attributes:
        opset: ONNX opset to export with.
        activation_type: int8: "uint8" or "int8" static QDQ activations.
        weight_type: int8: "int8" or "uint8" static QDQ weights.
        per_channel: int8: one weight scale per output channel instead of per tensor.
        reduce_range: int8: 7-bit weights (no u8*s8 overflow on CPUs without VNNI).
        calibration_method: int8: "minmax", "entropy" or "percentile".
        max_input_ratio: int8: input layers stay float when the widest input feature spans more
            than this many times the median feature's range (0: off).
        int4_block_size: int4: the largest MatMulNBits block (a power of two >= 16).
        int4_group_size: int4 storage (Conv/LSTM/GRU): inputs per float16 scale, "auto" (chosen
            per layer), "channel" (one scale per output channel) or a size >= 2 ("16").
        int4_rounding: int4 scales: "search" (per group, the clipping ratio with the least weight
            error) or "max" (peak / 7, no clipping).
        engine: The runtime engine: "auto" (the fastest installed one that passes parity,
            measured at build; see candidates.py), "onnx" (onnxruntime), "openvino" or "native"
            (the runtime's recurrent kernel; lowering "native" only).
        lowering: "auto" (measured), "default", "hoisted" (recurrent input projections as
            one GEMM over all steps, where targets/onnx/recurrent.py provides it) or "scan"
            (the same, the recurrence an ONNX Scan; int8: every GEMM int8, weights stored once);
            "cone" (a TCN's receptive cone of the last step, targets/cone.py); "native" (an
            LSTM/GRU packed for the runtime's native recurrent engine, targets/onnx/native.py).
    """

    VERSION: ClassVar[int] = 1

    opset: int = 17
    activation_type: str = field(default="uint8", metadata={"choices": QTYPES})
    weight_type: str = field(default="int8", metadata={"choices": QTYPES})
    per_channel: bool = False
    reduce_range: bool = False
    calibration_method: str = field(default="minmax", metadata={"choices": METHODS})
    max_input_ratio: float = 8.0
    int4_block_size: int = 64
    int4_group_size: str = "auto"
    int4_rounding: str = field(default="search", metadata={"choices": ("search", "max")})
    engine: str = field(default="auto", metadata={"choices": ENGINES, "tune": True})
    lowering: str = field(default="auto", metadata={"choices": LOWERINGS, "tune": True})


class OnnxTarget(base.Target):
    """ONNX Runtime on x86 CPUs: fp32, int8 chosen per op type, or int4 weight-only (see
    targets/onnx/README.md); option ``keep_float`` leaves named layers in float."""

    name: ClassVar[str] = "onnx"
    model_file: ClassVar[str] = MODEL_FILE
    options_type: ClassVar[type[base.TargetOptions]] = OnnxOptions
    capabilities: ClassVar[base.Capabilities] = base.Capabilities(
        precisions=frozenset({base.Precision.FP32, base.Precision.INT8, base.Precision.INT4}),
        calibrated=frozenset({base.Precision.INT8}),
        int4=base.Int4Kind.COMPUTE,  # MatMulNBits computes in int4; Conv/RNN weights: storage only
        engine="onnx",
        keeps_layers=True,
        requires=("onnx", "onnxruntime", "onnxruntime.quantization", "onnxsim"),
        install="pip install 'edgecomp[onnx]'",
        packages=("onnx", "onnxruntime", "onnxsim", "torch"),
        calibration_option="calibration_method",
        calibration_methods=("percentile", "entropy"),  # ORT's histogram calibrators
        per_channel=frozenset({base.Precision.INT8}),  # QDQ and dynamic MatMul/LSTM kernels
        int4_groups=(16,),
        int4_blocks=(16,),  # MatMulNBits block sizes are powers of two >= 16
    )

    @classmethod
    def option_applies(cls, name: str, value: Any, module_type: type, precision: str) -> bool:
        """A named ``lowering`` applies where ``candidates.applicable_lowerings`` lists it."""
        if name != "lowering" or value == "auto":
            return True
        from .candidates import applicable_lowerings

        return value in applicable_lowerings(module_type, precision)

    def lower(self, request: base.Request) -> base.Lowered:
        """Export (or import) the graph, simplified; fp32 layer records."""
        from .export import EXPORTER, SIMPLIFIER, io_spec
        from .layers import layer_records

        exported = source_graph(request.model, request.options.opset)
        layers = layer_records(exported, exported, request.model.module, precision="fp32")
        lowering = {
            "opset": request.options.opset,
            "exporter": EXPORTER,
            "simplifier": SIMPLIFIER,
            "quantization": None,
            "n_calibration_windows": 0,
        }
        lowered = _finish(exported, io_spec(exported), layers, lowering, exported)
        if request.precision is base.Precision.FP32:
            return self._choose(request, lowered, lowered)
        return lowered

    def quantize(self, request: base.Request, lowered: base.Lowered) -> base.Lowered:
        """int8 by a rule per op type (calibrated), or int4 weight-only."""
        from .int4 import Int8Layers, lower_int4
        from .keep import kept_nodes, option_entries
        from .quantize import keep_float_entries

        exported, module = lowered.ir, request.model.module
        options = request.options.to_dict()
        with_edges = request.precision is base.Precision.INT4
        keep = kept_nodes(exported, module, keep_float_entries(options), with_edges=with_edges)
        if request.precision is base.Precision.INT4:
            entries = option_entries(options, "keep_int8")
            int8 = kept_nodes(exported, module, entries, with_edges=True, option="keep_int8")
            layers8 = Int8Layers(int8, request.windows, request.model.spec.features)
            final, layers, quantization = lower_int4(exported, module, options, keep, layers8)
            lowering = {**lowered.lowering, "quantization": quantization}
            final_lowered = _finish(final, lowered.io, layers, lowering, exported)
            return self._choose(request, lowered, final_lowered)
        return self._choose(request, lowered, _int8(request, lowered, options, keep))

    def _choose(
        self, request: base.Request, fp32: base.Lowered, default: base.Lowered
    ) -> base.Lowered:
        """The (lowering, engine, threads) measured fastest among those passing parity."""
        from .candidates import choose

        return choose(request, fp32, default, self.fp32_tolerance, self.model_file)

    def records(
        self, request: base.Request, lowered: base.Lowered, x: Any, out: Any
    ) -> dict[str, Any]:
        """The parity check ran on the chosen engine (see ``runner``): the record says which."""
        parity = lowered.lowering["parity"]
        return {"parity": {**parity, "engine": lowered.lowering.get("engine", parity["engine"])}}

    @classmethod
    def runner(cls, model_bytes: bytes, manifest: dict[str, Any], *, engine: str = "") -> Any:
        """The runtime engine the build chose (``recipe.lowering.engine``) unless one is named;
        with its batch routing (``recipe.lowering.batch_routing``), as ``load`` runs it."""
        files = {manifest.get("model_file", cls.model_file): model_bytes}
        return cls.artifact_runner(files, manifest, engine=engine)

    @classmethod
    def artifact_runner(
        cls, files: dict[str, bytes], manifest: dict[str, Any], *, engine: str = ""
    ) -> Any:
        """``runner``, the engine reading its own file where the build wrote one
        (``recipe.lowering.engine_files``: the native engine's)."""
        from edgecomp_runtime.engines import engine_input, get_engine, route_batches

        chosen = manifest.get("recipe", {}).get("lowering", {}).get("engine", "")
        key = chosen or cls.capabilities.engine
        data = engine_input(engine or key, manifest, files)
        runner = get_engine(engine or key)(data, manifest, threads=1)
        model_bytes = files[manifest.get("model_file", cls.model_file)]
        return route_batches(runner, key, model_bytes, manifest, threads=1, requested=engine)


def _int8(
    request: base.Request,
    lowered: base.Lowered,
    options: dict[str, Any],
    keep: dict[str, str],
    module: Any = None,
) -> base.Lowered:
    """int8 by the rule per op type of ``lowered.ir``, whose layers are ``module``'s (default:
    the request's model; the TCN cone passes its own module)."""
    from .layers import layer_records
    from .quantize import MAX_CALIBRATION_WINDOWS, Int8Settings, quantize_int8, select_windows

    settings = Int8Settings.from_options(options)
    calibration = select_windows(request.windows, MAX_CALIBRATION_WINDOWS)
    spec = request.model.spec
    quantized = quantize_int8(lowered.ir, calibration, settings, spec.features, keep)
    layers = layer_records(
        lowered.ir,
        quantized.proto,
        request.model.module if module is None else module,
        precision="int8",
        static_reason=settings.describe(len(calibration)),
        kept_float=quantized.kept_float,
    )
    lowering = {
        **lowered.lowering,
        "quantization": {
            **settings.lowering(len(calibration)),
            "steps": quantized.steps,
            **_storage(quantized.stored, layers),
        },
        "n_calibration_windows": len(calibration),
    }
    return _finish(quantized.proto, lowered.io, layers, lowering, lowered.ir)


def _storage(stored: list[str], layers: list[dict[str, Any]]) -> dict[str, Any]:
    """The int8 weight storage record (weight-only: those layers compute in float)."""
    from .quantize import STORAGE_NOTE

    names = [layer["name"] for layer in layers if layer["node"] in stored]
    return {"int8_storage": {"layers": names, "note": STORAGE_NOTE}} if names else {}


def _finish(
    final: onnx.ModelProto,
    io: dict[str, Any],
    layers: list[dict[str, Any]],
    lowering: dict[str, Any],
    exported: onnx.ModelProto,
) -> base.Lowered:
    """Shrunk bytes of a copy of ``final`` (tensor renames only: node names in ``layers`` stay
    valid; ``exported`` stays as it is for ``quantize``)."""
    import onnx

    from .compact import shrink

    copy = onnx.ModelProto()
    copy.CopyFrom(final)
    model = shrink(copy).SerializeToString()
    return base.Lowered(model=model, io=io, layers=layers, lowering=lowering, ir=exported)
