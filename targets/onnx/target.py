"""The x86 ONNX backend: torch.onnx.export -> onnxsim -> (int8 by op rule) -> model.onnx."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgecomp.targets.base import EmitResult, Target, TargetError, TargetProfile

if TYPE_CHECKING:
    import onnx
    import torch

    from edgecomp.spec import Model, ModelSpec

MODEL_FILE = "model.onnx"
FP32_TOLERANCE = 1e-4  # max abs diff vs torch, scaled units
N_PARITY_WINDOWS = 64
_MODULES = ("onnx", "onnxruntime", "onnxruntime.quantization", "onnxsim")
_PACKAGES = ("onnx", "onnxruntime", "onnxsim", "torch")


def export_onnx(
    module: torch.nn.Module, input_len: int, n_features: int, path: str | Path, *, opset: int = 17
) -> Path:
    """Export ``module`` to an fp32 ONNX file: dynamic batch, simplified, checked, shrunk.

    Args:
        module: Maps float32 [batch, input_len, n_features] to [batch, H, F_out].
        input_len: Window length L.
        n_features: Input features F.
        path: File to write (atomically).
        opset: ONNX opset of the default domain.

    Returns:
        The path written. Input "window" [batch, L, F], output "forecast" [batch, H, F_out].

    Raises:
        TargetError: The exporter, the simplifier or the checker failed (names the module/op).
    """
    from .compact import shrink
    from .export import export_model, write_model

    proto = export_model(module, input_len, n_features, opset=opset)
    return write_model(shrink(proto), Path(path))


def count_ops(path: str | Path) -> dict[str, int]:
    """Number of nodes per op type in the main graph of the ONNX file at ``path``."""
    import onnx

    return dict(Counter(node.op_type for node in onnx.load(str(path)).graph.node))


class OnnxTarget(Target):
    """ONNX Runtime on x86 CPUs: fp32, int8 chosen per op type, or int4 weight-only (see
    targets/onnx/README.md); option ``keep_float`` leaves named layers in float."""

    name: ClassVar[str] = "onnx"
    supported_precisions: ClassVar[frozenset[str]] = frozenset({"fp32", "int8", "int4"})
    needs_calibration: ClassVar[frozenset[str]] = frozenset({"int8"})
    requires: ClassVar[tuple[str, ...]] = _MODULES
    install: ClassVar[str] = "pip install 'edgecomp[onnx]'"

    def emit(
        self,
        model: Model,
        profile: TargetProfile,
        out_dir: Path,
        *,
        precision: str,
        calibration: np.ndarray | None = None,
    ) -> EmitResult:
        """Export ``model`` to ``out_dir/model.onnx`` at ``precision``; see Target.emit.

        Raises:
            TargetError: Unsupported precision, missing or malformed calibration windows, an
                export failure (naming the module/op), or fp32 parity with torch above 1e-4.
        """
        self._check_request(profile, precision)
        windows = _check_windows(calibration, model.spec, precision, self.needs_calibration)
        from .compact import shrink
        from .export import io_spec, write_model

        opset = int(profile.options.get("opset", 17))
        exported = _source_graph(model, opset)
        io = _check_io(io_spec(exported), model.spec)
        final, layers, lowering = self._lower(exported, model, profile, precision, windows)
        final = shrink(final)  # renames tensors only: node names in ``layers`` stay valid
        lowering["parity"] = _parity(
            final,
            model.module,
            _parity_windows(windows, model.spec),
            FP32_TOLERANCE if precision == "fp32" else None,
        )
        write_model(final, Path(out_dir) / MODEL_FILE)
        return EmitResult(
            model_file=MODEL_FILE,
            files=[MODEL_FILE],
            toolchain=_toolchain(),
            io=io,
            layers=layers,
            lowering={"opset": opset, **lowering},
        )

    def _check_request(self, profile: TargetProfile, precision: str) -> None:
        if profile.backend != self.name:
            raise TargetError(f"onnx: profile '{profile.name}' is for backend '{profile.backend}'")
        allowed = sorted(self.supported_precisions & set(profile.precisions))
        if precision not in allowed:
            raise TargetError(
                f"onnx: precision '{precision}' is not supported for target "
                f"'{profile.name}'; supported: {allowed}"
            )

    def _lower(
        self,
        exported: onnx.ModelProto,
        model: Model,
        profile: TargetProfile,
        precision: str,
        windows: np.ndarray | None,
    ) -> tuple[onnx.ModelProto, list[dict[str, Any]], dict[str, Any]]:
        from .export import EXPORTER, SIMPLIFIER
        from .int4 import lower_int4
        from .keep import keep_float_entries, kept_nodes
        from .layers import layer_records
        from .quantize import MAX_CALIBRATION_WINDOWS, Int8Settings, quantize_int8, select_windows

        lowering: dict[str, Any] = {
            "exporter": EXPORTER,
            "simplifier": SIMPLIFIER,
            "quantization": None,
            "n_calibration_windows": 0,
        }
        if precision == "fp32":
            return (
                exported,
                layer_records(exported, exported, model.module, precision="fp32"),
                lowering,
            )
        entries = keep_float_entries(profile.options)
        keep = kept_nodes(exported, model.module, entries, with_edges=precision == "int4")
        if precision == "int4":
            final, layers, lowering["quantization"] = lower_int4(
                exported, model.module, profile.options, keep
            )
            return final, layers, lowering
        settings = Int8Settings.from_options(profile.options)
        calibration = select_windows(windows, MAX_CALIBRATION_WINDOWS)
        quantized = quantize_int8(exported, calibration, settings, model.spec.features, keep)
        layers = layer_records(
            exported,
            quantized.proto,
            model.module,
            precision="int8",
            static_reason=settings.describe(len(calibration)),
            kept_float=quantized.kept_float,
        )
        lowering |= {
            "quantization": {**settings.lowering(len(calibration)), "steps": quantized.steps},
            "n_calibration_windows": len(calibration),
        }
        return quantized.proto, layers, lowering


def _source_graph(model: Model, opset: int) -> onnx.ModelProto:
    """The model as ONNX: exported from torch, or the user's ONNX file when that is the source."""
    from edgecomp.frontend import OnnxSource

    from .export import export_model, import_model

    if isinstance(model.module, OnnxSource):
        return import_model(model.module.path)
    return export_model(model.module, model.spec.input_len, model.spec.n_features, opset=opset)


def _check_windows(
    calibration: Any, spec: ModelSpec, precision: str, needs: frozenset[str]
) -> np.ndarray | None:
    expected = f"[N, {spec.input_len}, {spec.n_features}] (input_len, features)"
    if calibration is None:
        if precision in needs:
            raise TargetError(
                f"onnx: precision '{precision}' needs calibration windows {expected}; got none"
            )
        return None
    windows = np.asarray(calibration)
    if (
        windows.ndim != 3
        or windows.shape[1:] != (spec.input_len, spec.n_features)
        or (len(windows) == 0)
    ):
        raise TargetError(
            f"onnx: calibration windows must be {expected} with N >= 1; got {list(windows.shape)}"
        )
    if not np.issubdtype(windows.dtype, np.number):
        raise TargetError(f"onnx: calibration windows must be numeric; got dtype {windows.dtype}")
    windows = windows.astype(np.float32)
    if not np.isfinite(windows).all():
        raise TargetError("onnx: calibration windows contain NaN or inf; impute them first")
    return windows


def _check_io(io: dict[str, Any], spec: ModelSpec) -> dict[str, Any]:
    want = ["batch", spec.horizon, len(spec.targets)]
    got = io["outputs"][0]["shape"]
    if got != want:
        raise TargetError(
            f"onnx: model output 'forecast' is {got}; the spec needs {want} "
            f"(batch, horizon, targets)"
        )
    return io


def _parity_windows(windows: np.ndarray | None, spec: ModelSpec) -> np.ndarray:
    """Calibration windows spread over their range, or a few standard-normal ones."""
    from .quantize import select_windows

    if windows is not None:
        return select_windows(windows, N_PARITY_WINDOWS)
    rng = np.random.default_rng(0)
    return rng.standard_normal((8, spec.input_len, spec.n_features)).astype(np.float32)


def _parity(
    proto: onnx.ModelProto, module: torch.nn.Module, windows: np.ndarray, tolerance: float | None
) -> dict[str, Any]:
    """Run at batch 1 and batch N with ONNX Runtime, compare with torch; enforce ``tolerance``."""
    from .export import ort_runner

    with _eval(module) as reference_module:
        reference = reference_module(windows)
    try:
        run = ort_runner(proto)
        outputs = np.concatenate([run(windows[:1]), run(windows)[1:]])
    except Exception as exc:  # ORT raises its own exception types; report them in one line
        raise TargetError(f"onnx: ONNX Runtime cannot run the emitted model: {exc}") from exc
    diff = float(np.abs(outputs - reference).max())
    if not np.isfinite(diff) or (tolerance is not None and diff > tolerance):
        limit = "non-finite outputs" if tolerance is None else f"tolerance {tolerance:g}"
        raise TargetError(
            f"onnx: emitted model differs from torch: max abs diff {diff:.3g} "
            f"({limit}) over {len(windows)} windows"
        )
    return {"max_abs_diff": diff, "n_windows": len(windows), "batch_sizes": [1, len(windows)]}


@contextmanager
def _eval(module: torch.nn.Module) -> Iterator[Any]:
    """``module`` in eval mode as a numpy -> numpy function; its training flag is restored.

    An ONNX source (already numpy -> numpy, run by ORT) is used as it is.
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        yield module
        return
    training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield lambda x: module(torch.from_numpy(x)).numpy()
    finally:
        module.train(training)


def _toolchain() -> dict[str, str]:
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "unknown"
    return versions
