"""The Jetson backend: ONNX for TensorRT (fp32, fp16, int8 with explicit Q/DQ); the device builds
the engine. See targets/tensorrt/README.md.

export (torch.onnx.export + onnxsim, shared with the onnx backend) -> static check against the
profile's TensorRT -> fp16 casts / Q/DQ -> static check again -> ONNX Runtime parity -> TensorRT
parse + build on the host (tensorrt-rtx) -> model.onnx.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgecomp.targets.base import EmitResult, Target, TargetError, TargetProfile

from .options import TrtOptions

if TYPE_CHECKING:
    import onnx

    from edgecomp.spec import Model, ModelSpec

MODEL_FILE = "model.onnx"
FP32_TOLERANCE = 1e-4  # max abs diff vs the source model, scaled units
N_PARITY_WINDOWS = 64
MAX_CALIBRATION_WINDOWS = 512
_MODULES = ("onnx", "onnxruntime", "onnxsim")
_PACKAGES = ("onnx", "onnxruntime", "onnxsim", "torch", "tensorrt-rtx")


class TensorrtTarget(Target):
    """TensorRT on NVIDIA Jetson: ONNX in fp32, fp16 or int8 (explicit Q/DQ), engine built on the
    device from the manifest's builder settings."""

    name: ClassVar[str] = "tensorrt"
    supported_precisions: ClassVar[frozenset[str]] = frozenset({"fp32", "fp16", "int8", "int4"})
    needs_calibration: ClassVar[frozenset[str]] = frozenset({"int8"})
    requires: ClassVar[tuple[str, ...]] = _MODULES
    install: ClassVar[str] = "pip install 'edgecomp[onnx,tensorrt]'"

    def emit(
        self,
        model: Model,
        profile: TargetProfile,
        out_dir: Path,
        *,
        precision: str,
        calibration: np.ndarray | None = None,
    ) -> EmitResult:
        """Lower ``model`` to ``out_dir/model.onnx`` for the profile's TensorRT; see Target.emit.

        Raises:
            TargetError: Unsupported precision (int4 names why), a node or opset the profile's
                TensorRT refuses (named), ``aot`` without torch-tensorrt, bad calibration windows,
                fp32 parity above 1e-4, or TensorRT's parser/builder refusing the graph.
        """
        from edgecomp.targets.onnx.compact import shrink
        from edgecomp.targets.onnx.export import io_spec, write_model

        from .lower import lower
        from .support import check_graph

        options = TrtOptions.from_profile(profile)
        self._check_request(profile, precision, options)
        windows = _check_windows(calibration, model.spec, precision in self.needs_calibration)
        exported = _source_graph(model, options.opset)
        io = _check_io(io_spec(exported), model.spec)
        check_graph(exported, options.tensorrt, profile.name)  # fail early: before any lowering
        lowered = lower(exported, model.module, precision, windows, MAX_CALIBRATION_WINDOWS)
        final = shrink(lowered.proto)  # renames tensors only: node names in the layers stay
        lowering = {
            "opset": options.opset,
            **lowered.lowering,
            "support_check": check_graph(final, options.tensorrt, profile.name),
            "tensorrt": options.builder(precision, io),
            "parity": _parity(final, model, windows, precision),
            "host_build": _host_build(final, options, io),
        }
        write_model(final, Path(out_dir) / MODEL_FILE)
        return EmitResult(
            model_file=MODEL_FILE,
            files=[MODEL_FILE],
            toolchain=_toolchain(),
            io=io,
            layers=lowered.layers,
            lowering=lowering,
        )

    def _check_request(self, profile: TargetProfile, precision: str, options: TrtOptions) -> None:
        if profile.backend != self.name:
            raise TargetError(f"tensorrt: profile '{profile.name}' is for '{profile.backend}'")
        if precision == "int4":
            why = (
                "this backend has no int4 weight-only Q/DQ lowering yet"
                if options.int4_weight_only
                else f"the profile's TensorRT {options.tensorrt} is not marked as taking int4 "
                "weight-only Q/DQ (option int4_weight_only)"
            )
            raise TargetError(f"tensorrt: int4 is not available for '{profile.name}': {why}")
        allowed = sorted(self.supported_precisions & {*profile.precisions, "int4"})
        if precision not in allowed:
            raise TargetError(
                f"tensorrt: precision '{precision}' is not supported for target "
                f"'{profile.name}'; supported: {allowed}"
            )
        if options.aot:
            from .aot import refuse_unless_available

            refuse_unless_available()


def _source_graph(model: Model, opset: int) -> onnx.ModelProto:
    from edgecomp.frontend import OnnxSource
    from edgecomp.targets.onnx.export import export_model, import_model

    if isinstance(model.module, OnnxSource):
        return import_model(model.module.path)
    return export_model(model.module, model.spec.input_len, model.spec.n_features, opset=opset)


def _check_windows(calibration: Any, spec: ModelSpec, needed: bool) -> np.ndarray | None:
    expected = f"[N, {spec.input_len}, {spec.n_features}] (N >= 1, input_len, features)"
    if calibration is None:
        if needed:
            raise TargetError(f"tensorrt: int8 needs calibration windows {expected}; got none")
        return None
    windows = np.asarray(calibration)
    if (
        windows.ndim != 3
        or windows.shape[1:] != (spec.input_len, spec.n_features)
        or not len(windows)
    ):
        raise TargetError(
            f"tensorrt: calibration windows must be {expected}; got {list(windows.shape)}"
        )
    if not np.issubdtype(windows.dtype, np.number) or not np.isfinite(windows).all():
        raise TargetError("tensorrt: calibration windows must be finite numbers; impute them first")
    return windows.astype(np.float32)


def _check_io(io: dict[str, Any], spec: ModelSpec) -> dict[str, Any]:
    want = ["batch", spec.horizon, len(spec.targets)]
    got = io["outputs"][0]["shape"]
    if got != want:
        raise TargetError(f"tensorrt: model output is {got}; the spec needs {want}")
    return io


def _parity(
    proto: onnx.ModelProto, model: Model, windows: np.ndarray | None, precision: str
) -> dict[str, Any]:
    """ONNX Runtime (CPU) on the emitted graph at batch 1 and N against the source model."""
    from edgecomp.frontend import reference_predict
    from edgecomp.targets.onnx.export import ort_runner

    from .lower import spread

    if windows is None:
        rng = np.random.default_rng(0)
        windows = rng.standard_normal((8, model.spec.input_len, model.spec.n_features))
    windows = spread(windows.astype(np.float32), N_PARITY_WINDOWS)
    try:
        run = ort_runner(proto)
        out = np.concatenate([run(windows[:1]), run(windows)[1:]])
    except Exception as exc:  # ORT raises its own exception types; report them in one line
        raise TargetError(f"tensorrt: ONNX Runtime cannot run the emitted graph: {exc}") from exc
    diff = float(np.abs(out - reference_predict(model, windows)).max())
    limit = FP32_TOLERANCE if precision == "fp32" else float("inf")
    if not np.isfinite(diff) or diff > limit:
        raise TargetError(
            f"tensorrt: emitted {precision} graph differs from the source model by {diff:.3g} "
            f"(limit {limit:g}) over {len(windows)} windows"
        )
    return {"engine": "onnxruntime CPU", "max_abs_diff": diff, "n_windows": len(windows)}


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


def _toolchain() -> dict[str, str]:
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions
