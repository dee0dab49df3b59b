"""The Jetson backend: ONNX for TensorRT (fp32, fp16, int8 with explicit Q/DQ); the device builds
the engine. See targets/tensorrt/README.md.

export (torch.onnx.export + onnxsim, shared with the onnx backend) -> static check against the
profile's TensorRT -> fp16 casts / Q/DQ -> static check again -> ONNX Runtime parity -> TensorRT
parse + build on the host (tensorrt-rtx) -> model.onnx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from edgecomp.targets import base

from .options import TrtOptions

if TYPE_CHECKING:
    import onnx

MODEL_FILE = "model.onnx"
MAX_CALIBRATION_WINDOWS = 512


class TensorrtTarget(base.Target):
    """TensorRT on NVIDIA Jetson: ONNX in fp32, fp16 or int8 (explicit Q/DQ), engine built on the
    device from the manifest's builder settings."""

    name: ClassVar[str] = "tensorrt"
    model_file: ClassVar[str] = MODEL_FILE
    options_type: ClassVar[type[base.TargetOptions]] = TrtOptions
    capabilities: ClassVar[base.Capabilities] = base.Capabilities(
        engine="tensorrt",
        parity_engine="onnx",  # no GPU on the build host: ONNX Runtime CPU runs the graph
        precisions=frozenset({base.Precision.FP32, base.Precision.FP16, base.Precision.INT8}),
        calibrated=frozenset({base.Precision.INT8}),
        requires=("onnx", "onnxruntime", "onnxsim"),
        install="pip install 'edgecomp[onnx,tensorrt]'",
        packages=("onnx", "onnxruntime", "onnxsim", "torch", "tensorrt-rtx"),
    )

    def refusal(self, precision: base.Precision, options: base.TargetOptions) -> str:
        """int4 names why it is not offered."""
        if precision is not base.Precision.INT4:
            return ""
        if getattr(options, "int4_weight_only", False):
            return "this backend has no int4 weight-only Q/DQ lowering yet"
        return (
            f"the profile's TensorRT {getattr(options, 'tensorrt', '?')} is not marked as taking "
            "int4 weight-only Q/DQ (option int4_weight_only)"
        )

    def check(self, request: base.Request) -> None:
        """``aot`` is refused with the reason where torch-tensorrt cannot run."""
        if request.options.aot:
            from .aot import refuse_unless_available

            refuse_unless_available()

    def lower(self, request: base.Request) -> base.Lowered:
        """Export, check against the profile's TensorRT before any lowering; fp32 as exported."""
        from edgecomp.targets.onnx.export import io_spec
        from edgecomp.targets.onnx.target import source_graph

        from .support import check_graph

        options = request.options
        exported = source_graph(request.model, options.opset)
        check_graph(exported, options.tensorrt, request.profile.name)  # fail early
        return _lowered(request, exported, io_spec(exported))

    def quantize(self, request: base.Request, lowered: base.Lowered) -> base.Lowered:
        """fp16 casts, or int8 explicit Q/DQ on Conv/Gemm/MatMul (LSTM/GRU in fp16)."""
        return _lowered(request, lowered.ir, lowered.io)


def _lowered(request: base.Request, exported: onnx.ModelProto, io: dict[str, Any]) -> base.Lowered:
    """``exported`` at ``request.precision``, checked again, with the builder settings."""
    from edgecomp.targets.onnx.compact import shrink

    from .lower import lower
    from .support import check_graph

    options, name = request.options, request.profile.name
    copy = type(exported)()
    copy.CopyFrom(exported)
    precision = str(request.precision)
    lowered = lower(copy, request.model.module, precision, request.windows, MAX_CALIBRATION_WINDOWS)
    final = shrink(lowered.proto)  # renames tensors only: node names in the layers stay
    lowering = {
        "opset": options.opset,
        **lowered.lowering,
        "support_check": check_graph(final, options.tensorrt, name),
        "tensorrt": options.builder(precision, io),
        "host_build": _host_build(final, options, io),
    }
    return base.Lowered(final.SerializeToString(), io, lowered.layers, lowering, ir=exported)


def _host_build(proto: onnx.ModelProto, options: TrtOptions, io: dict[str, Any]) -> dict[str, Any]:
    from . import hostbuild

    if not options.host_build:
        return {"skipped": "profile option host_build is false"}
    if not hostbuild.available():
        return {
            "skipped": f"{hostbuild.PACKAGE} is not installed: pip install 'edgecomp[tensorrt]'"
        }
    name = io["inputs"][0]["name"]
    return hostbuild.host_build(proto.SerializeToString(), name, options.shapes(io))
