"""The ExecuTorch backend: torch.export -> XNNPACK delegate -> model.pte, run by ExecuTorch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from edgecomp.targets import base
from edgecomp.targets.executorch import engine as _engine  # noqa: F401 - registers it

MODEL_FILE = "model.pte"
GRANULARITIES = ("channelwise", "tensorwise")


@dataclass(frozen=True)
class ExecutorchOptions(base.TargetOptions):
    """Options of an executorch profile (targets/profiles/*-executorch.json), overridable per build.

    Attributes:
        max_batch: Most windows one call takes (the program's memory plan; larger batches are
            split by the runtime). At least 16 (see lower.EXAMPLE_BATCH).
        weight_granularity: int8 weights: "channelwise" or "tensorwise".
    """

    VERSION: ClassVar[int] = 1

    max_batch: int = 1024
    weight_granularity: str = field(default="channelwise", metadata={"choices": GRANULARITIES})

    def validate(self, where: str) -> None:
        """``max_batch`` is at least 16."""
        from .lower import EXAMPLE_BATCH

        super().validate(where)
        if self.max_batch < EXAMPLE_BATCH:
            raise base.TargetError(
                f"{where}: option 'max_batch' must be at least {EXAMPLE_BATCH}; "
                f"got {self.max_batch!r}"
            )


class ExecutorchTarget(base.Target):
    """ExecuTorch with the XNNPACK delegate (x86-64 and aarch64 CPUs): fp32 and static int8.

    See targets/executorch/README.md for what each precision does to each layer and the measured
    figures.
    """

    name: ClassVar[str] = "executorch"
    model_file: ClassVar[str] = MODEL_FILE
    options_type: ClassVar[type[base.TargetOptions]] = ExecutorchOptions
    capabilities: ClassVar[base.Capabilities] = base.Capabilities(
        precisions=frozenset({base.Precision.FP32, base.Precision.INT8}),
        calibrated=frozenset({base.Precision.INT8}),
        engine="executorch",
        dynamic_batch=True,  # up to max_batch per call (measured: README)
        streaming=False,
        requires=("executorch", "torchao"),
        install="pip install 'edgecomp[executorch]'",
        packages=("executorch", "torchao", "torch"),
    )

    def check(self, request: base.Request) -> None:
        """``keep_float`` is refused: no per-layer choice here; ONNX source models too."""
        if request.options.keep_float:
            raise base.TargetError(
                f"executorch: option 'keep_float' is not supported (every layer the XNNPACK "
                f"quantizer knows is quantized); got {list(request.options.keep_float)}"
            )
        if type(request.model.module).__name__ == "OnnxSource":
            raise base.TargetError(
                "executorch: an ONNX source cannot be lowered (torch.export needs an nn.Module)"
            )

    def refusal(self, precision: base.Precision, options: base.TargetOptions) -> str:
        """Why a precision is not offered."""
        return "XNNPACK through ExecuTorch here: fp32 and static int8 only"

    def lower(self, request: base.Request) -> base.Lowered:
        """torch.export with a dynamic batch, lowered to XNNPACK at fp32."""
        from . import lower

        exported = lower.export(request.model, request.options.max_batch)
        return _finish(request, lower.to_pte(exported), exported, None)

    def quantize(self, request: base.Request, lowered: base.Lowered) -> base.Lowered:
        """Static int8 (PT2E with the XNNPACK quantizer), calibrated on the request's windows."""
        from . import lower

        options = request.options
        per_channel = options.weight_granularity == "channelwise"
        quantized, modules = lower.quantize(
            lowered.ir, request.windows, per_channel=per_channel, max_batch=options.max_batch
        )
        settings = {
            "method": "pt2e-static",
            "quantizer": "XNNPACKQuantizer (symmetric int8, histogram activation observers)",
            "weight_granularity": options.weight_granularity,
            "n_windows": len(request.windows),
        }
        return _finish(request, lower.to_pte(quantized, modules), lowered.ir, settings)


def _finish(
    request: base.Request, program: Any, exported: Any, quantization: dict[str, Any] | None
) -> base.Lowered:
    from .lower import layer_records

    spec = request.model.spec
    io = {
        "inputs": [
            {
                "name": "window",
                "shape": ["batch", spec.input_len, spec.n_features],
                "dtype": "float32",
            }
        ],
        "outputs": [
            {
                "name": "forecast",
                "shape": ["batch", spec.horizon, len(spec.targets)],
                "dtype": "float32",
            }
        ],
    }
    lowering = {
        "exporter": "torch.export",
        "partitioner": "XnnpackPartitioner",
        "max_batch": request.options.max_batch,
        "batching": f"dynamic batch, up to {request.options.max_batch} windows per call",
        "threads": request.options.threads,
        "delegated_calls": program.delegated,
        "portable_ops": list(program.portable_ops),
        "quantization": quantization,
        "n_calibration_windows": 0 if quantization is None else quantization["n_windows"],
    }
    layers = layer_records(request.model, str(request.precision), program)
    return base.Lowered(model=program.pte, io=io, layers=layers, lowering=lowering, ir=exported)
