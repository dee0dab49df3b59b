"""The ARM TFLite backend: litert-torch -> (ai-edge-quantizer) -> model.tflite, run by LiteRT."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from edgecomp.targets import base

from .convert import io_spec

MODEL_FILE = "model.tflite"
N_PROBES = 2
PROBE_ATOL = {"fp32": 1e-4, "int8": 1e-3, "int8-dynamic": 1e-3, "int4": 1e-3}  # full int8: 2 steps


@dataclass(frozen=True)
class TfliteOptions(base.TargetOptions):
    """Options of a tflite profile (targets/profiles/*arm*.json), overridable per build.

    Attributes:
        xnnpack: Run with the XNNPACK delegate on the device (recorded for the runtime).
        calibration: int8: "minmax", "moving-average" or "dynamic" (activations quantized at
            run time; see quantize.py).
        weight_granularity: int8 weights: "channelwise" or "tensorwise".
        int4_group_size: int4 FULLY_CONNECTED weights: "auto" (per layer), "channel", or
            "32" / "64" / "128" / "256" inputs per scale (see quantize.py).
        recurrent_lowering: LSTM / GRU forecasters: "loop" (a TFLite WHILE loop written by
            edgecomp, weights per channel, see loop.py) or "unrolled" (lowering.py, then
            litert-torch and ai-edge-quantizer).
    """

    VERSION: ClassVar[int] = 1

    xnnpack: bool = True
    calibration: str = "minmax"
    weight_granularity: str = "channelwise"
    int4_group_size: str = "auto"
    recurrent_lowering: str = field(default="loop", metadata={"choices": ("loop", "unrolled")})


class TfliteTarget(base.Target):
    """TFLite for ARM CPUs (LiteRT + XNNPACK): fp32, full int8, dynamic int8, int4 weights.

    See targets/tflite/README.md for what each precision does to each layer.
    """

    name: ClassVar[str] = "tflite"
    model_file: ClassVar[str] = MODEL_FILE
    options_type: ClassVar[type[base.TargetOptions]] = TfliteOptions
    capabilities: ClassVar[base.Capabilities] = base.Capabilities(
        precisions=frozenset(
            {
                base.Precision.FP32,
                base.Precision.INT8,
                base.Precision.INT8_DYNAMIC,
                base.Precision.INT4,
            }
        ),
        calibrated=frozenset({base.Precision.INT8}),
        int4=base.Int4Kind.COMPUTE,  # XNNPACK qc4w kernels
        engine="tflite",
        int4_groups=(32,),  # the ladder's calibration rung: the finest group on every layer
        dynamic_batch=True,  # batch 1 graph; the engine pins a batch-64 copy (batch.py)
        keeps_layers=True,
        requires=("litert_torch", "ai_edge_quantizer", "ai_edge_litert"),
        install="pip install 'edgecomp[tflite]'",
        packages=("litert-torch", "ai-edge-quantizer", "ai-edge-litert", "torch"),
        calibration_option="calibration",
        calibration_methods=("moving-average", "dynamic"),
    )

    def check(self, request: base.Request) -> None:
        """The quantization settings are checked before anything is converted."""
        _settings(request)

    def lower(self, request: base.Request) -> base.Lowered:
        """Convert with litert-torch; fp32 layer records."""
        from .convert import convert_module
        from .graph import Graph
        from .lowering import rewrite

        if _loop(request):
            from .loop import lower_loop

            return lower_loop(request)
        spec = request.model.spec
        module = rewrite(request.model.module) or request.model.module
        source = convert_module(module, spec.input_len, spec.n_features)
        graph = Graph(source)
        layers = graph.layers(request.model.module)
        lowered = base.Lowered(model=source, io={}, layers=[], ir=(source, graph, layers))
        return _finish(request, lowered, source, {}, base.Precision.FP32)

    def quantize(self, request: base.Request, lowered: base.Lowered) -> base.Lowered:
        """ai-edge-quantizer at ``request.precision``; ``keep_float`` layers stay float, int4
        ``keep_int8`` layers get int8 weights."""
        from .quantize import check_scales, quantize

        if _loop(request):
            from .loop import quantize_loop

            return quantize_loop(request, lowered)
        source, graph, layers = lowered.ir
        settings = _settings(request)
        kept = settings.kept(graph, layers)
        int8 = settings.int8(graph, layers, kept, str(request.precision))
        scopes = [layer.op.scope for layer in layers if layer.name in kept]
        int4 = request.precision is base.Precision.INT4
        groups = settings.groups(graph, layers, kept | int8) if int4 else {}
        grouped = {la.op.scope: groups[la.name] for la in layers if la.name in groups}
        grouped |= {la.op.scope: 0 for la in layers if la.name in int8}
        precision = base.Precision(settings.effective(str(request.precision)))
        final = quantize(source, str(precision), request.windows, settings, scopes, grouped)
        if groups:
            check_scales(final, source, layers)
        return _finish(request, lowered, final, kept, precision, groups, int8)

    @classmethod
    def runner(cls, model_bytes: bytes, manifest: dict[str, Any], *, engine: str = "") -> Any:
        """LiteRT itself (ai-edge-litert), never the tflite-runtime fallback."""
        from edgecomp_runtime.engines.litert import LiteRtEngine

        return LiteRtEngine(model_bytes, manifest, threads=1, module="ai_edge_litert")

    def records(
        self, request: base.Request, lowered: base.Lowered, x: np.ndarray, out: np.ndarray
    ) -> dict[str, Any]:
        """Probe windows and their outputs, checked again by the runtime on the device."""
        out_scale = lowered.io["outputs"][0].get("scale")
        atol = 2 * out_scale if out_scale else PROBE_ATOL[str(request.precision)]
        probes = {
            "encoding": "float32-le-base64",
            "inputs": _encode(x[:N_PROBES]),
            "outputs": _encode(out[:N_PROBES]),
            "atol": atol,
        }
        return {"probes": probes}


def _loop(request: base.Request) -> bool:
    """Whether the recurrent forecaster is written as a WHILE loop (option recurrent_lowering)."""
    from .loop import supports

    loop = getattr(request.options, "recurrent_lowering", "loop") == "loop"
    return loop and supports(request.model.module)


def _settings(request: base.Request) -> Any:
    from .quantize import request_settings

    return request_settings(request)


def _finish(
    request: base.Request,
    lowered: base.Lowered,
    final: bytes,
    kept: dict[str, str],
    precision: base.Precision,
    groups: dict[str, int] | None = None,
    int8: dict[str, str] | None = None,
) -> base.Lowered:
    """Layer records of ``final`` at ``precision``, compacted bytes, io and the lowering record."""
    from .convert import compact
    from .graph import Graph
    from .layers import layer_records
    from .shrink import shrink

    _, _, layers = lowered.ir
    settings = _settings(request)
    n_windows = 0 if request.windows is None else len(request.windows)
    records = layer_records(
        Graph(final),
        layers,
        precision=str(precision),
        kept=kept,
        n_windows=n_windows,
        granularity=settings.granularity(str(precision)),
        groups=groups,
        int8=int8,
    )
    final, batching = _batch(shrink(compact(final)), request)
    quantized = precision is not base.Precision.FP32
    lowering = {
        "converter": "litert-torch",
        "recurrent_lowering": _recurrent_lowering(request.model.module),
        **_cone_lowering(request.model.module),
        **batching,
        "xnnpack": request.options.xnnpack,
        "threads": request.options.threads,
        "quantization": _quantization(settings, str(precision), n_windows, groups, layers, int8)
        if quantized
        else None,
        "n_calibration_windows": n_windows,
    }
    io = io_spec(final, request.model.spec)
    return base.Lowered(model=final, io=io, layers=records, lowering=lowering, ir=lowered.ir)


def _quantization(
    settings: Any,
    precision: str,
    n_windows: int,
    groups: dict[str, int] | None,
    layers: list,
    int8: dict[str, str] | None,
) -> dict[str, Any]:
    record = settings.lowering(precision, n_windows)
    if precision == "int4":
        record |= settings.lowering_int4(groups or {}, len(layers), int8)
    return record


def _batch(model: bytes, request: base.Request) -> tuple[bytes, dict[str, Any]]:
    """How the runtime batches ``model``'s windows (the model itself is unchanged)."""
    from .batch import batching

    spec = request.model.spec
    return model, batching(model, spec.input_len, spec.n_features)


def _recurrent_lowering(module: Any) -> str | None:
    from .lowering import DESCRIPTION, rewrites

    return DESCRIPTION if rewrites(module) else None


def _cone_lowering(module: Any) -> dict[str, str]:
    from .lowering import TCN_DESCRIPTION, cone_rewrites

    return {"tcn_lowering": TCN_DESCRIPTION} if cone_rewrites(module) else {}


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode()
