"""The ARM TFLite backend: litert-torch -> (ai-edge-quantizer) -> model.tflite, run by LiteRT."""

from __future__ import annotations

import base64
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgecomp._io import atomic_write_bytes
from edgecomp.targets.base import EmitResult, Target, TargetError, TargetProfile

from .quantize import QuantSettings

if TYPE_CHECKING:
    from edgecomp.spec import Model, ModelSpec

MODEL_FILE = "model.tflite"
FP32_TOLERANCE = 1e-4  # max abs diff vs torch, scaled units
N_PARITY_WINDOWS = 64
N_PROBES = 2
PROBE_ATOL = {"fp32": 1e-4, "int8-dynamic": 1e-3, "int4": 1e-3}  # int8: two output steps
_MODULES = ("litert_torch", "ai_edge_quantizer", "ai_edge_litert")
_PACKAGES = ("litert-torch", "ai-edge-quantizer", "ai-edge-litert", "torch")


class TfliteTarget(Target):
    """TFLite for ARM CPUs (LiteRT + XNNPACK): fp32, full int8, dynamic int8, int4 weights.

    See targets/tflite/README.md for what each precision does to each layer.
    """

    name: ClassVar[str] = "tflite"
    supported_precisions: ClassVar[frozenset[str]] = frozenset(
        {"fp32", "int8", "int8-dynamic", "int4"}
    )
    needs_calibration: ClassVar[frozenset[str]] = frozenset({"int8"})
    requires: ClassVar[tuple[str, ...]] = _MODULES
    install: ClassVar[str] = "pip install 'edgecomp[tflite]'"

    def emit(
        self,
        model: Model,
        profile: TargetProfile,
        out_dir: Path,
        *,
        precision: str,
        calibration: np.ndarray | None = None,
    ) -> EmitResult:
        """Convert ``model`` to ``out_dir/model.tflite`` at ``precision``; see Target.emit.

        Raises:
            TargetError: Unsupported precision, bad options or calibration windows, a conversion
                or quantization failure, a layer that cannot take the precision (named), or
                fp32 parity with torch above 1e-4.
        """
        self._check_request(profile, precision)
        settings = QuantSettings.from_options(profile.options)
        runtime = _runtime_options(profile)
        windows = _check_windows(calibration, model.spec, precision in self.needs_calibration)
        final, records = _lower(model, precision, settings, windows)
        io = io_spec(final, model.spec)
        parity, probes = _parity(final, io, runtime, model, windows, precision)
        atomic_write_bytes(Path(out_dir) / MODEL_FILE, final)
        n_windows = 0 if windows is None else len(windows)
        return EmitResult(
            model_file=MODEL_FILE,
            files=[MODEL_FILE],
            toolchain=_toolchain(),
            io=io,
            layers=records,
            lowering={
                "converter": "litert-torch",
                "model_batch": 1,
                "batching": "one invoke per window (the graph's batch is fixed at 1)",
                **runtime,
                "quantization": None
                if precision == "fp32"
                else settings.lowering(precision, n_windows),
                "n_calibration_windows": n_windows,
                "parity": parity,
                "probes": probes,
            },
        )

    def _check_request(self, profile: TargetProfile, precision: str) -> None:
        if profile.backend != self.name:
            raise TargetError(
                f"tflite: profile '{profile.name}' is for backend '{profile.backend}'"
            )
        allowed = sorted(self.supported_precisions & set(profile.precisions))
        if precision not in allowed:
            raise TargetError(
                f"tflite: precision '{precision}' is not supported for target "
                f"'{profile.name}'; supported: {allowed}"
            )


def _lower(
    model: Model, precision: str, settings: QuantSettings, windows: np.ndarray | None
) -> tuple[bytes, list[dict[str, Any]]]:
    """Convert, quantize, record the layers and compact: the final model bytes and records."""
    from .convert import compact, convert_module
    from .graph import Graph
    from .layers import layer_records
    from .quantize import quantize

    source = convert_module(model.module, model.spec.input_len, model.spec.n_features)
    graph = Graph(source)
    layers = graph.layers(model.module)
    kept = settings.kept(graph, layers) if precision != "fp32" else {}
    final = source
    if precision != "fp32":
        scopes = [la.op.scope for la in layers if la.name in kept]
        final = quantize(source, precision, windows, settings, scopes)
    records = layer_records(
        Graph(final),
        layers,
        precision=precision,
        kept=kept,
        n_windows=0 if windows is None else len(windows),
        granularity=settings.granularity(precision),
    )
    return compact(final), records


def _check_windows(calibration: Any, spec: ModelSpec, needed: bool) -> np.ndarray | None:
    expected = f"[N, {spec.input_len}, {spec.n_features}] (input_len, features) with N >= 1"
    if calibration is None:
        if needed:
            raise TargetError(f"tflite: precision 'int8' needs calibration windows {expected}")
        return None
    windows = np.asarray(calibration)
    if (
        windows.ndim != 3
        or windows.shape[1:] != (spec.input_len, spec.n_features)
        or (not len(windows))
    ):
        raise TargetError(f"tflite: calibration windows must be {expected}; got {windows.shape}")
    if not np.issubdtype(windows.dtype, np.number) or not np.isfinite(windows).all():
        raise TargetError("tflite: calibration windows must be finite numbers; impute them first")
    return windows.astype(np.float32)


def io_spec(model: bytes, spec: ModelSpec) -> dict[str, Any]:
    """Names, shapes (symbolic batch), dtypes and int8 scale / zero point of input and output."""
    from ai_edge_litert.interpreter import Interpreter

    from .convert import quiet, signature_names

    with quiet():
        interpreter = Interpreter(model_content=model)
    names = signature_names(model)
    want = {
        "inputs": [spec.input_len, spec.n_features],
        "outputs": [spec.horizon, len(spec.targets)],
    }
    io: dict[str, Any] = {}
    for side, details, name in zip(
        want,
        (interpreter.get_input_details(), interpreter.get_output_details()),
        names,
        strict=True,
    ):
        (detail,) = details
        if list(detail["shape"]) != [1, *want[side]]:
            raise TargetError(
                f"tflite: model {side[:-1]} '{name}' is {list(detail['shape'])}; the spec needs "
                f"{[1, *want[side]]}"
            )
        entry = {"name": name, "shape": ["batch", *want[side]], "dtype": detail["dtype"].__name__}
        if detail["dtype"] == np.int8:
            scale, zero = detail["quantization"]
            entry |= {"scale": float(scale), "zero_point": int(zero)}
        io[side] = [entry]
    return io


def _runtime_options(profile: TargetProfile) -> dict[str, Any]:
    xnnpack = profile.options.get("xnnpack", True)
    threads = profile.options.get("threads", 1)
    if not isinstance(xnnpack, bool):
        raise TargetError(f"tflite: option 'xnnpack' must be true or false; got {xnnpack!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise TargetError(f"tflite: option 'threads' must be a positive integer; got {threads!r}")
    return {"xnnpack": xnnpack, "threads": threads}


def _parity(
    model: bytes,
    io: dict[str, Any],
    runtime: dict[str, Any],
    source: Model,
    windows: np.ndarray | None,
    precision: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the emitted model with the runtime's LiteRT engine, compare with torch; enforce the
    fp32 tolerance; return the parity record and the probe windows with their outputs."""
    from edgecomp.frontend import reference_predict
    from edgecomp_runtime.engines.litert import LiteRtEngine

    x = _parity_windows(windows, source.spec)
    manifest = {"model_file": MODEL_FILE, "io": io, "recipe": {"lowering": runtime}}
    try:
        out = LiteRtEngine(model, manifest, threads=1, module="ai_edge_litert").run(x)
    except Exception as exc:  # the engine's errors name the model; keep them in one line
        raise TargetError(f"tflite: LiteRT cannot run the emitted model: {exc}") from exc
    diff = float(np.abs(out - reference_predict(source, x)).max())
    if not np.isfinite(diff) or (precision == "fp32" and diff > FP32_TOLERANCE):
        raise TargetError(
            f"tflite: emitted model differs from torch: max abs diff {diff:.3g} "
            f"(fp32 tolerance {FP32_TOLERANCE:g}) over {len(x)} windows"
        )
    out_scale = io["outputs"][0].get("scale")
    atol = 2 * out_scale if out_scale else PROBE_ATOL[precision]
    probes = {
        "encoding": "float32-le-base64",
        "inputs": _encode(x[:N_PROBES]),
        "outputs": _encode(out[:N_PROBES]),
        "atol": atol,
    }
    return {"max_abs_diff": diff, "n_windows": len(x)}, probes


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode()


def _parity_windows(windows: np.ndarray | None, spec: ModelSpec) -> np.ndarray:
    """Calibration windows spread over their range, or a few standard-normal ones."""
    if windows is None:
        rng = np.random.default_rng(0)
        return rng.standard_normal((8, spec.input_len, spec.n_features)).astype(np.float32)
    index = np.linspace(0, len(windows) - 1, min(len(windows), N_PARITY_WINDOWS)).round()
    return windows[np.unique(index.astype(int))]


def _toolchain() -> dict[str, str]:
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "unknown"
    return versions
