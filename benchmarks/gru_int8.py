"""An int8-compute GRU (targets/onnx/gru_int8.py) against the float-compute int8 GRU and peers.

    .venv/bin/python benchmarks/gru_int8.py [--checkpoint DIR] [--rounds 40] [--iters 4]
        [--lstm DIR]

On the traffic GRU checkpoint (default: benchmarks/out/accuracy_budget/ckpt-default/traffic/gru),
in one process, one thread each, interleaved in short bursts in shuffled order, on the real test
windows at batch 1 and 64:

* ``ort int8 float-compute (edgecomp default)``: the fused GRU export as edgecomp's default int8
  build quantizes it (GRU weights stored int8, dequantized, the GRU op in float; head int8);
* ``ort gru_int8 integer/<h>``: ``gru_int8_graph`` in its MatMulInteger form (input projections
  and head dynamic int8, h quantized fixed at 1/127 or per step) on ONNX Runtime;
* ``ort gru_int8 qdq`` and ``openvino gru_int8 qdq``: its static QDQ form on both engines;
* ``ort int8 Scan``: the existing int8 Scan lowering (``--option lowering=scan``);
* ``ort fp32``, ``openvino fp32`` and ``openvino bf16``: the plain fp32 export (GRU op).

Each is scored on the test split, observed values only: worst-step MAE change against torch fp32,
and max |difference| from torch (scaled units). OpenVINO's runtime model is read back for each
of its variants: the layer types and the precision each ran in (``FullyConnected u8``: int8).

With ``--lstm DIR`` (e.g. .../ckpt-default/traffic/lstm) the LSTM is run too: fp32 on both
engines, ORT with edgecomp's default int8 (DynamicQuantizeLSTM), and OpenVINO's int8
LSTMSequence (RNNSeq u8), built directly with ``openvino.opset13`` with FakeQuantize on X, the
initial H and the weights (OpenVINO's ONNX frontend and NNCF's default quantization leave an
LSTM in float; the GRU has no int8 form there: oneDNN has no int8 linear-before-reset GRU).
Prints a table; writes benchmarks/out/gru_int8.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from edgecomp.checkpoint import load_checkpoint
from edgecomp.metrics import horizon_metrics
from edgecomp.pipeline import calibration_windows
from edgecomp.targets.onnx.gru_int8 import calibrate, gru_int8_graph, layer_io
from edgecomp.targets.onnx.quantize import Int8Settings, quantize_int8, select_windows
from edgecomp.targets.onnx.recurrent import scan_graph
from edgecomp.targets.onnx.target import export_onnx
from edgecomp.workflow import dataset_for

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "odot_detector_counts_15min.parquet"
CKPT = ROOT / "benchmarks" / "out" / "accuracy_budget" / "ckpt-default" / "traffic"
OUT = ROOT / "benchmarks" / "out" / "gru_int8.json"
OV_CONFIG = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=CKPT / "gru")
    parser.add_argument("--lstm", type=Path, help="also compare an LSTM checkpoint (see doc)")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--iters", type=int, default=4, help="timed calls per burst")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {
        "versions": _versions(),
        "load_average": {"start": os.getloadavg()},
        "rounds": args.rounds,
        "iters": args.iters,
        "gru": compare_gru(load_checkpoint(args.checkpoint), args),
    }
    _print("gru", results["gru"])
    if args.lstm:
        results["lstm"] = compare_lstm(load_checkpoint(args.lstm), args)
        _print("lstm", results["lstm"])
    results["load_average"]["end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(args.out)
    print(f"wrote {args.out}")


def compare_gru(model, args: argparse.Namespace) -> dict:
    """Every GRU variant: latency (interleaved), error, size, OpenVINO's layer precisions."""
    spec, module = model.spec, model.module.eval()
    dataset, fp32, default = _baseline(module, spec)
    scales = calibrate(module, calibration_windows(dataset, 512))

    def ours(form: str, h_mode: str) -> bytes:
        graph = gru_int8_graph(
            module, spec.input_len, spec.n_features, form=form, h_mode=h_mode, scales=scales
        )
        return graph.SerializeToString()

    qdq = ours("qdq", "fixed")
    shape = (spec.input_len, spec.n_features)
    models = {
        "ort fp32": ("ort", fp32),
        "ort int8 float-compute (edgecomp default)": ("ort", _bytes(default)),
        "ort gru_int8 integer/fixed-h": ("ort", ours("integer", "fixed")),
        "ort gru_int8 integer/dynamic-h": ("ort", ours("integer", "dynamic")),
        "ort gru_int8 qdq": ("ort", qdq),
        "ort int8 Scan (lowering=scan)": ("ort", _bytes(scan_graph(module, *shape))),
        "openvino fp32": ("ov-f32", fp32),
        "openvino bf16": ("ov-bf16", fp32),
        "openvino gru_int8 qdq": ("ov-f32", qdq),
        "openvino int8 GRUSequence": ("ov-model", ov_gru_int8(module, spec, scales)),
    }
    return _compare(model, dataset, models, args)


def _baseline(module, spec):
    """The dataset, the fp32 ONNX bytes and edgecomp's default int8 build (512 train windows)."""
    dataset = dataset_for(spec, DATA)
    fp32 = _export(module, spec)
    windows = select_windows(dataset.train.x.astype(np.float32), 512)
    default = quantize_int8(onnx.load_from_string(fp32), windows, Int8Settings(), spec.features)
    return dataset, fp32, default


def compare_lstm(model, args: argparse.Namespace) -> dict:
    """The LSTM: ORT's default int8 against OpenVINO's int8 LSTMSequence (see doc)."""
    spec, module = model.spec, model.module.eval()
    dataset, fp32, default = _baseline(module, spec)
    scales = calibrate_lstm(module, calibration_windows(dataset, 512))
    models = {
        "ort fp32": ("ort", fp32),
        "ort int8 DynamicQuantizeLSTM (edgecomp default)": ("ort", _bytes(default)),
        "openvino fp32": ("ov-f32", fp32),
        "openvino int8 LSTMSequence": ("ov-model", ov_lstm_int8(module, spec, scales)),
    }
    return _compare(model, dataset, models, args)


def _compare(model, dataset, models: dict, args) -> dict:
    x = dataset.test.x.astype(np.float32)
    truth, observed = dataset.raw_targets("test"), dataset.test.y_observed
    with torch.inference_mode():
        reference = model.module(torch.from_numpy(x)).numpy()
    runners, info, rows = {}, {}, {}
    for name, (kind, data) in models.items():
        try:
            runners[name], info[name] = _runner(kind, data)
        except RuntimeError as exc:  # OpenVINO's compile errors (e.g. no int8 LBR GRU)
            rows[name] = {"error": _first_line(exc)}
    base = horizon_metrics(truth, dataset.unscale_targets(reference), observed=observed)["mae"]
    latency = _interleaved(runners, x, args.rounds, args.iters)
    for name, run in runners.items():
        y = np.concatenate([run(x[i : i + 64]) for i in range(0, len(x), 64)])
        mae = horizon_metrics(truth, dataset.unscale_targets(y), observed=observed)["mae"]
        worst = max(m / b - 1 for m, b in zip(mae, base, strict=True) if m and b)
        rows[name] = {
            "p50_ms": latency[name],
            "worst_step_mae_change": worst,
            "max_abs_diff_vs_torch": float(np.abs(y - reference).max()),
            **info[name],
        }
    default = next(n for n in rows if "(edgecomp default)" in n)
    for row in rows.values():
        if "p50_ms" in row:
            row["x_default"] = {b: v / rows[default]["p50_ms"][b] for b, v in row["p50_ms"].items()}
    return {"n_test_windows": len(x), "variants": rows}


def _first_line(exc: Exception) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    found = [line for line in lines if "could not" in line or "Check" in line]
    return (found or lines or [type(exc).__name__])[0][:300]


def _bytes(proto) -> bytes:
    """A ModelProto, or quantize_int8's result (its ``proto``), serialized."""
    return getattr(proto, "proto", proto).SerializeToString()


def _export(module, spec) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(module, spec.input_len, spec.n_features, Path(tmp) / "fp32.onnx")
        return path.read_bytes()


def _runner(kind: str, data) -> tuple:
    """(batch -> forecast, info) for one engine."""
    if kind == "ort":
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        ops = collections.Counter(n.op_type for n in onnx.load_from_string(data).graph.node)
        return (lambda b: session.run(None, {"window": b})[0]), {"bytes": len(data), "ops": ops}
    import openvino as ov

    core = ov.Core()
    source = data if kind == "ov-model" else core.read_model(data)
    precision = "bf16" if kind == "ov-bf16" else "f32"
    t0 = time.perf_counter()
    compiled = core.compile_model(
        source, "CPU", {**OV_CONFIG, "INFERENCE_PRECISION_HINT": precision}
    )
    info = {"compile_s": time.perf_counter() - t0, "runtime_layers": _ov_layers(compiled)}
    if kind != "ov-model":
        info["bytes"] = len(data)
    request = compiled.create_infer_request()

    def run(b: np.ndarray) -> np.ndarray:
        request.infer({0: b}, share_inputs=True)
        return np.array(request.get_output_tensor(0).data)

    return run, info


def _ov_layers(compiled) -> dict:
    """'layerType precision' -> count over OpenVINO's runtime (executed) model."""
    count = collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        count[f"{rt['layerType'].astype(str)} {rt['runtimePrecision'].astype(str)}"] += 1
    return dict(sorted(count.items()))


def _interleaved(runners: dict, x: np.ndarray, rounds: int, iters: int) -> dict:
    """Median ms per runner and batch size. Each round runs every runner in turn, in a new
    shuffled order, for a short burst (one warm-up call, then ``iters`` timed): short bursts and
    many rounds, so that a change of the host's load hits every runner alike."""
    times = {name: {1: [], 64: []} for name in runners}
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        for b in (1, 64):
            start = int(rng.integers(0, len(x) - b))
            batch = np.ascontiguousarray(x[start : start + b])
            for name in rng.permutation(list(runners)):
                run = runners[name]
                run(batch)  # warm-up: this shape, and the caches for this model
                for _ in range(iters):
                    t0 = time.perf_counter_ns()
                    run(batch)
                    times[name][b].append((time.perf_counter_ns() - t0) / 1e6)
    return {n: {f"b{b}": float(np.median(v)) for b, v in per.items()} for n, per in times.items()}


def calibrate_lstm(module, windows: np.ndarray) -> list[dict]:
    """Per LSTM layer: its input's range and max |h|, on ``windows``."""
    return [
        {"lo": float(x.min()), "hi": float(x.max()), "h": float(out.abs().max())}
        for x, out in layer_io(module.rnn, windows)
    ]


def ov_lstm_int8(module, spec, scales: list[dict]):
    """The LSTM forecaster as an OpenVINO model: per layer an LSTMSequence whose X, initial H
    and weights pass FakeQuantize (u8 activations at calibrated ranges, i8 weights), head in
    float."""
    import openvino as ov
    from openvino import opset13 as ops

    rnn, hidden = module.rnn, module.rnn.hidden_size
    x_in, zeros, seq_len = _ov_inputs(spec, hidden)
    x = x_in
    order = np.r_[hidden : 2 * hidden, 0:hidden, 2 * hidden : 4 * hidden]  # torch ifgo -> fico
    with torch.no_grad():
        for k, s in enumerate(scales):
            w, r = (getattr(rnn, f"{n}_l{k}").numpy()[order] for n in ("weight_ih", "weight_hh"))
            b = (getattr(rnn, f"bias_ih_l{k}") + getattr(rnn, f"bias_hh_l{k}")).numpy()[order]
            x_q = _fq(x, min(s["lo"], 0.0), max(s["hi"], 0.0), 256)
            h_q = _fq(zeros, -s["h"], s["h"], 256)
            seq = ops.lstm_sequence(
                x_q,
                h_q,
                zeros,
                seq_len,
                _fq_weight(w[None]),
                _fq_weight(r[None]),
                ops.constant(b[None]),
                hidden,
                "forward",
            )
            x = ops.squeeze(seq.output(0), ops.constant(np.array([1])))
    return ov.Model([_ov_head(module, spec, x, x_in)], [x_in], "lstm_int8")


def _ov_inputs(spec, hidden: int):
    """The window parameter [batch, L, F], a zero initial state [batch, 1, hidden] and the
    sequence lengths [batch] (all L) an OpenVINO RNN sequence op takes."""
    from openvino import opset13 as ops

    x_in = ops.parameter([-1, spec.input_len, spec.n_features], np.float32, name="window")
    batch = ops.gather(ops.shape_of(x_in), ops.constant(np.array([0])), ops.constant(0))
    zeros = ops.broadcast(
        ops.constant(np.float32(0)), ops.concat([batch, ops.constant(np.array([1, hidden]))], 0)
    )
    seq_len = ops.broadcast(ops.constant(np.int32(spec.input_len)), batch)
    return x_in, zeros, seq_len


def _ov_head(module, spec, x, x_in):
    """The float head on the last step's h, plus the residual last reading."""
    from openvino import opset13 as ops

    last = ops.gather(x, ops.constant(np.int64(spec.input_len - 1)), ops.constant(1))
    with torch.no_grad():
        w_head, b_head = module.head.weight.numpy(), module.head.bias.numpy()
    y = ops.add(ops.matmul(last, ops.constant(w_head), False, True), ops.constant(b_head))
    y = ops.reshape(y, ops.constant(np.array([-1, module.horizon, module.n_targets])), False)
    if module.residual:
        tail = ops.gather(x_in, ops.constant(np.int64(spec.input_len - 1)), ops.constant(1))
        if not module._all_features:
            tail = ops.gather(tail, ops.constant(module.target_index.numpy()), ops.constant(1))
        y = ops.add(y, ops.unsqueeze(tail, ops.constant(np.array([1]))))
    return y


def ov_gru_int8(module, spec, scales):
    """The GRU as OpenVINO GRUSequence layers (linear_before_reset, torch's form) with
    FakeQuantize on X, the initial H and the weights, head in float: the int8 GRU OpenVINO would
    run if its CPU plugin had one."""
    import openvino as ov
    from openvino import opset13 as ops

    rnn, hidden = module.rnn, module.rnn.hidden_size
    x_in, zeros, seq_len = _ov_inputs(spec, hidden)
    x = x_in
    order = np.r_[hidden : 2 * hidden, 0:hidden, 2 * hidden : 3 * hidden]  # torch rzn -> zrh
    with torch.no_grad():
        for k in range(rnn.num_layers):
            w, r = (getattr(rnn, f"{n}_l{k}").numpy()[order] for n in ("weight_ih", "weight_hh"))
            b_ih, b_hh = (getattr(rnn, f"{n}_l{k}").numpy()[order] for n in ("bias_ih", "bias_hh"))
            b = np.r_[(b_ih + b_hh)[: 2 * hidden], b_ih[2 * hidden :], b_hh[2 * hidden :]]
            lo, hi = min(scales.x_min[k], 0.0), max(scales.x_max[k], 0.0)
            seq = ops.gru_sequence(
                _fq(x, lo, hi, 256),
                _fq(zeros, -scales.h_max[k], scales.h_max[k], 256),
                seq_len,
                _fq_weight(w[None]),
                _fq_weight(r[None]),
                ops.constant(b[None].astype(np.float32)),
                hidden,
                "forward",
                linear_before_reset=True,
            )
            x = ops.squeeze(seq.output(0), ops.constant(np.array([1])))
    return ov.Model([_ov_head(module, spec, x, x_in)], [x_in], "gru_int8")


def _fq(node, lo: float, hi: float, levels: int):
    from openvino import opset13 as ops

    lo_c, hi_c = ops.constant(np.float32(lo)), ops.constant(np.float32(hi))
    return ops.fake_quantize(node, lo_c, hi_c, lo_c, hi_c, levels)


def _fq_weight(w: np.ndarray):
    """Symmetric int8 (255 levels), one scale for w [1, G, K]: OpenVINO 2026.4's RNNSeq u8 erred
    3.6x more with one scale per gate row (traffic LSTM max |error| 1.87 against 0.51)."""
    from openvino import opset13 as ops

    peak = np.float32(max(np.abs(w).max(), 1e-8))
    lo, hi = ops.constant(-peak), ops.constant(peak)
    return ops.fake_quantize(ops.constant(w.astype(np.float32)), lo, hi, lo, hi, 255)


def _versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("onnxruntime", "openvino", "torch")}


def _print(arch: str, res: dict) -> None:
    print(f"\n{arch}: {res['n_test_windows']} test windows; p50 ms (1 thread, interleaved)")
    print(f"{'variant':48} {'b1':>7} {'b64':>7} {'x default':>15} {'worst':>8} {'max|d|':>7}")
    for name, row in res["variants"].items():
        if "error" in row:
            print(f"{name:48} failed: {row['error']}")
            continue
        p, r = row["p50_ms"], row["x_default"]
        print(
            f"{name:48} {p['b1']:7.3f} {p['b64']:7.3f} {r['b1']:8.2f} {r['b64']:6.2f} "
            f"{row['worst_step_mae_change']:+8.3%} {row['max_abs_diff_vs_torch']:7.4f}"
        )
        if "runtime_layers" in row:
            fc = {k: v for k, v in row["runtime_layers"].items() if k.split()[0] in LAYERS}
            print(f"{'':48} OpenVINO layers: {fc}")


LAYERS = ("FullyConnected", "MatMul", "RNNSeq", "GRUSequence", "LSTMSequence", "FakeQuantize")


if __name__ == "__main__":
    main()
