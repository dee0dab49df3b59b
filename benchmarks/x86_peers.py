"""Peers and the floor of the x86 side by side (x86_compare.py).

Peers, each in its own recommended configuration, one thread, on the same calibration windows the
edgecomp build uses (the first ``CALIBRATION`` training windows spread over the training range):

* ONNX Runtime ``quantize_static``: ``quant_pre_process`` then the defaults (QDQ, uint8
  activations, int8 weights, per tensor, MinMax);
* OpenVINO fp32: the fp32 ONNX file compiled for the CPU with 1 inference thread and the LATENCY
  hint, every other setting left at OpenVINO's default (on CPUs with bf16 that includes a bf16
  inference precision; the JSON records the precision the plugin used);
* OpenVINO + NNCF int8: ``nncf.quantize`` (defaults) of the OpenVINO model on those windows,
  compiled as above.

The floor: each model's multiply-accumulate count (MatMul/Gemm/Conv/LSTM/GRU, counted from the fp32
ONNX graph at batch 1) over the host's single-thread throughput, measured here on a GEMV
[1, K] x [K, N] and a GEMM [64, K] x [K, N] in float32 (numpy and ONNX Runtime MatMul) and int8
(ONNX Runtime MatMulInteger, uint8 x int8), less each engine's empty-call time.
"""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

THREADS = 1
OV_CONFIG = {"INFERENCE_NUM_THREADS": THREADS, "PERFORMANCE_HINT": "LATENCY"}
FLOOR_K = FLOOR_N = 512  # the GEMV/GEMM the floor is measured on (weights: 1 MiB fp32)
FLOOR_BATCH = 64
FLOOR_REPS = 200


def versions() -> dict[str, str]:
    """Versions of the peers' packages ("not installed" where absent)."""
    found = {}
    for package in ("onnxruntime", "openvino", "nncf"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def add_peers(fp32_path: Path, calibration: np.ndarray, work: Path, variants: dict) -> dict:
    """Build the peers of ``fp32_path`` and add their calls (scaled windows in) to ``variants``.

    Returns:
        Per peer: its settings, model size and build time, or ``{"skipped": reason}``.
    """
    info = {"ort_quantize_static": _ort_static(fp32_path, calibration, work, variants)}
    try:
        import openvino  # noqa: F401
    except ImportError:
        reason = "openvino is not installed: pip install 'edgecomp[openvino]'"
        return {**info, "openvino_fp32": {"skipped": reason}, "openvino_nncf_int8": info_skip()}
    info["openvino_fp32"] = _openvino_fp32(fp32_path, variants)
    info["openvino_nncf_int8"] = _openvino_nncf(fp32_path, calibration, work, variants)
    return info


def info_skip() -> dict:
    return {"skipped": "openvino/nncf not installed: pip install 'edgecomp[openvino]'"}


def session(path: Path | bytes) -> ort.InferenceSession:
    """A one-thread CPU session (the peers' and the floor's ONNX Runtime setting)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = THREADS
    opts.log_severity_level = 3
    return ort.InferenceSession(
        path if isinstance(path, bytes) else str(path), opts, providers=["CPUExecutionProvider"]
    )


class _Reader:
    """ORT calibration reader over the calibration windows, one window per call."""

    def __init__(self, windows: np.ndarray) -> None:
        self._items = iter(windows)

    def get_next(self) -> dict[str, np.ndarray] | None:
        window = next(self._items, None)
        return None if window is None else {"window": window[None]}

    def rewind(self) -> None:  # newer ORT calls it between calibration passes
        pass


def _ort_static(fp32_path: Path, calibration: np.ndarray, work: Path, variants: dict) -> dict:
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    start = time.perf_counter()
    prepared, path = work / "ort_static_pre.onnx", work / "ort_static.onnx"
    quant_pre_process(str(fp32_path), str(prepared))
    quantize_static(str(prepared), str(path), _Reader(calibration))
    sess = session(path)
    variants["ort_quantize_static"] = lambda s, r: sess.run(None, {"window": s})[0]
    return {
        "settings": "quant_pre_process + quantize_static defaults (QDQ, QUInt8 activations, "
        "QInt8 weights, per tensor, MinMax), 1 intra-op thread",
        "size": path.stat().st_size,
        "build_s": round(time.perf_counter() - start, 2),
    }


def _compile(model: Any) -> tuple[Any, dict]:
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", OV_CONFIG)
    used = {
        key: str(compiled.get_property(key))
        for key in ("INFERENCE_NUM_THREADS", "PERFORMANCE_HINT", "INFERENCE_PRECISION_HINT")
    }
    return compiled, used


def _ov_call(compiled: Any):
    request = compiled.create_infer_request()

    def call(scaled: np.ndarray, raw: Any) -> np.ndarray:
        return np.array(request.infer({0: scaled}, share_inputs=True)[0])

    return call


def _openvino_fp32(fp32_path: Path, variants: dict) -> dict:
    start = time.perf_counter()
    compiled, used = _compile(str(fp32_path))
    variants["openvino_fp32"] = _ov_call(compiled)
    return {
        "settings": f"compile_model(fp32 ONNX, 'CPU', {OV_CONFIG}); defaults otherwise",
        "compiled_properties": used,
        "build_s": round(time.perf_counter() - start, 2),
    }


def _openvino_nncf(fp32_path: Path, calibration: np.ndarray, work: Path, variants: dict) -> dict:
    import nncf
    import openvino as ov

    start = time.perf_counter()
    model = ov.Core().read_model(str(fp32_path))
    dataset = nncf.Dataset(list(calibration), lambda window: window[None])
    settings = (
        "nncf.quantize(ov.Core().read_model(fp32 ONNX), nncf.Dataset(calibration windows), "
        f"subset_size=all {len(calibration)}) defaults (preset performance), compiled as "
        "OpenVINO fp32"
    )
    failed = ""
    try:
        quantized = nncf.quantize(model, dataset, subset_size=len(calibration))
        compiled, used = _compile(quantized)
    except RuntimeError as exc:
        # NOTE: OpenVINO 2026.4's CPU plugin refuses NNCF's default int8 LSTM (FakeQuantize on
        # the recurrent weights: "LSTMSequence ... expects Constant for port 5"); the peer then
        # quantizes everything but the recurrent layers, NNCF's documented ignored_scope way.
        failed = str(exc).strip().splitlines()[-1][:200]
        ignored = nncf.IgnoredScope(types=["LSTMSequence", "GRUSequence"], validate=False)
        quantized = nncf.quantize(
            model, dataset, subset_size=len(calibration), ignored_scope=ignored
        )
        compiled, used = _compile(quantized)
        settings += "; defaults failed to compile, so ignored_scope=types LSTM/GRUSequence"
    path = work / "nncf_int8.xml"
    ov.save_model(quantized, str(path))
    variants["openvino_nncf_int8"] = _ov_call(compiled)
    return {
        "settings": settings,
        **({"default_failed": failed} if failed else {}),
        "compiled_properties": used,
        "size": path.with_suffix(".bin").stat().st_size,
        "build_s": round(time.perf_counter() - start, 2),
    }


# --- the floor -----------------------------------------------------------------------------


def count_macs(path: Path) -> dict[str, int]:
    """Multiply-accumulates per op type of one batch-1 forward pass of the ONNX file."""
    model = onnx.load(str(path))
    for value in list(model.graph.input) + list(model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = 1
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    shapes = {v.name: _dims(v) for v in [*model.graph.value_info, *model.graph.input]}
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    shapes.update({v.name: _dims(v) for v in model.graph.output})
    macs: dict[str, int] = {}
    for node in model.graph.node:
        count = _node_macs(node, shapes)
        if count:
            macs[node.op_type] = macs.get(node.op_type, 0) + count
    return macs


def _dims(value: Any) -> list[int]:
    return [d.dim_value for d in value.type.tensor_type.shape.dim]


def _node_macs(node: Any, shapes: dict[str, list[int]]) -> int:
    if node.op_type in ("MatMul", "Gemm"):
        a, out = shapes[node.input[0]], shapes[node.output[0]]
        trans_a = any(at.name == "transA" and at.i for at in node.attribute)
        k = a[-2] if trans_a else a[-1]
        return int(np.prod(out)) * k
    if node.op_type == "Conv":
        w, out = shapes[node.input[1]], shapes[node.output[0]]
        return int(np.prod(out)) * int(np.prod(w[1:]))
    if node.op_type in ("LSTM", "GRU", "RNN"):
        x = shapes[node.input[0]]
        layout = next((at.i for at in node.attribute if at.name == "layout"), 0)
        steps, batch = (x[1], x[0]) if layout else (x[0], x[1])
        weights = int(np.prod(shapes[node.input[1]])) + int(np.prod(shapes[node.input[2]]))
        return steps * batch * weights
    return 0


def _matmul_model(m: int, k: int, n: int, int8: bool) -> bytes:
    rng = np.random.default_rng(0)
    if int8:
        weight = numpy_helper.from_array(rng.integers(-127, 128, (k, n), dtype=np.int8), "w")
        x = helper.make_tensor_value_info("x", TensorProto.UINT8, [m, k])
        y = helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])
        node = helper.make_node("MatMulInteger", ["x", "w"], ["y"])
    else:
        weight = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])
        node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "floor", [x], [y], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _identity_model(m: int, k: int, int8: bool) -> bytes:
    kind = TensorProto.UINT8 if int8 else TensorProto.FLOAT
    x = helper.make_tensor_value_info("x", kind, [m, k])
    y = helper.make_tensor_value_info("y", kind, [m, k])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _best_time(fn, reps: int = FLOOR_REPS) -> float:
    """Median seconds of ``fn()`` over ``reps`` calls, after a warm-up."""
    for _ in range(5):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - start)
    return float(np.median(times)) / 1e9


def _ort_throughput(m: int, int8: bool) -> float:
    """MACs/s of ORT MatMul(Integer) [m, K] x [K, N], one thread, less the empty-call time."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (m, FLOOR_K), dtype=np.uint8) if int8 else None
    if x is None:
        x = rng.standard_normal((m, FLOOR_K)).astype(np.float32)
    matmul = session(_matmul_model(m, FLOOR_K, FLOOR_N, int8))
    empty = session(_identity_model(m, FLOOR_K, int8))
    busy = _best_time(lambda: matmul.run(None, {"x": x}))
    idle = _best_time(lambda: empty.run(None, {"x": x}))
    return m * FLOOR_K * FLOOR_N / max(busy - idle, 1e-9)


def _numpy_throughput(m: int) -> float:
    """MACs/s of a float32 numpy matmul [m, K] x [K, N] on one BLAS thread."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(2)
    x = rng.standard_normal((m, FLOOR_K)).astype(np.float32)
    w = rng.standard_normal((FLOOR_K, FLOOR_N)).astype(np.float32)
    out = np.empty((m, FLOOR_N), np.float32)
    with threadpool_limits(1):
        busy = _best_time(lambda: np.matmul(x, w, out=out))
    return m * FLOOR_K * FLOOR_N / busy


def host_throughput() -> dict[str, Any]:
    """The host's single-thread GEMV (batch 1) and GEMM (batch 64) throughput, GMAC/s.

    ``best`` per (precision, kind) is the fastest of the measured paths: the floor uses it.
    """
    measured = {
        "fp32_gemv": {"numpy": _numpy_throughput(1), "ort_matmul": _ort_throughput(1, False)},
        "fp32_gemm": {
            "numpy": _numpy_throughput(FLOOR_BATCH),
            "ort_matmul": _ort_throughput(FLOOR_BATCH, False),
        },
        "int8_gemv": {"ort_matmulinteger": _ort_throughput(1, True)},
        "int8_gemm": {"ort_matmulinteger": _ort_throughput(FLOOR_BATCH, True)},
    }
    gmacs = {kind: {k: v / 1e9 for k, v in paths.items()} for kind, paths in measured.items()}
    return {
        "shape": f"[1 or {FLOOR_BATCH}, {FLOOR_K}] x [{FLOOR_K}, {FLOOR_N}]",
        "gmac_per_s": gmacs,
        "best": {kind: max(paths.values()) for kind, paths in gmacs.items()},
    }


INT8_VARIANTS = ("int8", "quantize", "nncf")  # names of variants that compute in int8


def floor_multiples(latency: dict, macs: int, throughput: dict) -> dict[str, Any]:
    """Each variant's p50 as a multiple of its floor: MACs / best throughput of its precision
    (GEMV at batch 1, GEMM at batch 64)."""
    best = throughput["best"]
    floors, multiples = {}, {}
    for b, kind in (("b1", "gemv"), ("b64", "gemm")):
        n = 1 if b == "b1" else FLOOR_BATCH
        floors[b] = {p: n * macs / (best[f"{p}_{kind}"] * 1e9) * 1e3 for p in ("fp32", "int8")}
        multiples[b] = {
            name: stats["p50"] / floors[b]["int8" if _int8(name) else "fp32"]
            for name, stats in latency[b].items()
        }
    return {"floor_ms": floors, "multiple": multiples}


def _int8(name: str) -> bool:
    return any(tag in name for tag in INT8_VARIANTS)
