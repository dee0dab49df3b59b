"""Recurrent lowerings side by side: ONNX Runtime's fused LSTM/GRU op against the hoisted and
Scan lowerings (targets/onnx/recurrent.py).

    .venv/bin/python benchmarks/recurrent_lowering.py [--checkpoints DIR] [--quick]

For the traffic LSTM and GRU (checkpoints from DIR/<arch>, else trained here as
benchmarks/x86_compare.py trains them), ONNX models run in one process, interleaved round by round
in shuffled order, one thread each, on the real test windows at batch 1 and 64: the fused export
in fp32, as edgecomp's default int8 lowering builds it (LSTM: DynamicQuantizeLSTM; GRU: float
compute with W and R stored int8, and, for comparison, with them float as before), and after ORT's
default ``quantize_dynamic``; the hoisted lowering unrolled over L (fp32, every GEMM int8); one
ONNX Scan per layer in fp32, int8 by ORT's ``quantize_dynamic``, and int8 as ``scan_graph`` writes
it (weights stored once, h at a fixed scale). Each is scored on the test split (observed values
only): worst-step MAE change against the fused fp32 model, max |difference| from torch, and its
file size. Then the int8 artifacts of the default and the scan lowering are built (engine
onnxruntime) and timed the same way through ``edgecomp_runtime``: ``engine.run`` and ``predict``.
Prints tables; writes benchmarks/out/recurrent_lowering.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import quantize_dynamic

import edgecomp_runtime as ecr
from edgecomp.checkpoint import load_checkpoint
from edgecomp.data import DataConfig
from edgecomp.frontend import reference_predict
from edgecomp.metrics import horizon_metrics
from edgecomp.pipeline import BuildConfig
from edgecomp.targets.onnx.quantize import Int8Settings, quantize_int8, select_windows
from edgecomp.targets.onnx.recurrent import hoisted_graph, quantize_hoisted, scan_graph
from edgecomp.targets.onnx.target import export_onnx
from edgecomp.train import TrainConfig
from edgecomp.workflow import build_artifact, dataset_for, train_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "odot_detector_counts_15min.parquet"
DATA_CONFIG = DataConfig(input_len=48, horizon=8, id_col="detector", value_cols=("total",))
TRAIN = TrainConfig(epochs=40, patience=6, lr=2e-3)
OUT = ROOT / "benchmarks" / "out" / "recurrent_lowering.json"


def variants(model, dataset, work: Path) -> dict[str, bytes]:
    """name -> ONNX bytes of each lowering of one checkpoint."""
    spec, module = model.spec, model.module.eval()
    fused = export_onnx(module, spec.input_len, spec.n_features, work / "fused.onnx")
    quantize_dynamic(str(fused), str(work / "fused_qd.onnx"))
    proto = onnx.load(str(fused))
    windows = select_windows(dataset.train.x.astype(np.float32), 512)
    int8 = quantize_int8(proto, windows, Int8Settings(), spec.features)
    hoisted = hoisted_graph(module, spec.input_len, spec.n_features)
    scan = hoisted_graph(module, spec.input_len, spec.n_features, scan=True)
    found = {
        "fused fp32": fused.read_bytes(),
        "fused int8 (edgecomp default)": int8.proto.SerializeToString(),
    }
    if int8.stored:  # the GRU as the default int8 lowering left it before: weights float
        keep = {name: "float weights" for name in int8.stored}
        before = quantize_int8(proto, windows, Int8Settings(), spec.features, keep)
        found["fused int8, GRU weights float"] = before.proto.SerializeToString()
    return {
        **found,
        "fused quantize_dynamic": (work / "fused_qd.onnx").read_bytes(),
        "hoisted fp32": hoisted.SerializeToString(),
        "hoisted int8 all GEMMs": quantize_hoisted(hoisted).SerializeToString(),
        "Scan fp32": scan.SerializeToString(),
        "Scan int8 (quantize_dynamic)": quantize_hoisted(scan).SerializeToString(),
        "Scan int8 (scan_graph)": scan_graph(
            module, spec.input_len, spec.n_features
        ).SerializeToString(),
    }


def session(data: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def compare(model, work: Path, rounds: int, iters: int) -> dict:
    """Latency (interleaved) and test-split error of every variant of one checkpoint."""
    dataset = dataset_for(model.spec, DATA)
    x = dataset.test.x.astype(np.float32)
    truth, observed = dataset.raw_targets("test"), dataset.test.y_observed
    reference = reference_predict(model, x)
    files = variants(model, dataset, work)
    sessions = {name: session(data) for name, data in files.items()}
    outputs = {
        name: np.concatenate(
            [s.run(None, {"window": x[i : i + 256]})[0] for i in range(0, len(x), 256)]
        )
        for name, s in sessions.items()
    }
    mae = {
        name: horizon_metrics(truth, dataset.unscale_targets(y), observed=observed)["mae"]
        for name, y in outputs.items()
    }
    base = mae["fused fp32"]
    rows = {}
    latency = _interleaved(sessions, x, rounds, iters)
    for name in sessions:
        worst = max(m / b - 1 for m, b in zip(mae[name], base, strict=True) if m and b)
        rows[name] = {
            "p50_ms": latency[name],
            "worst_step_mae_change": worst,
            "max_abs_diff_vs_torch": float(np.abs(outputs[name] - reference).max()),
            "bytes": len(files[name]),
        }
    return {"n_test_windows": len(x), "variants": rows}


def _interleaved(sessions: dict, x: np.ndarray, rounds: int, iters: int) -> dict:
    return _timed({name: _runner(s) for name, s in sessions.items()}, x, rounds, iters)


def _runner(s: ort.InferenceSession):
    return lambda batch: s.run(None, {"window": batch})


def _timed(calls: dict, x: np.ndarray, rounds: int, iters: int) -> dict:
    """name -> {"b1", "b64"}: median ms per call over rounds, the (name, batch) pairs shuffled
    in each round."""
    times = {(name, b): [] for name in calls for b in (1, 64)}
    order = random.Random(0)
    for r in range(rounds):
        keys = list(times)
        order.shuffle(keys)
        for name, b in keys:
            batch = np.ascontiguousarray(x[(r * b) % (len(x) - b) :][:b])
            calls[name](batch)  # warm
            n = iters if b == 1 else max(2, iters // 10)
            start = time.perf_counter()
            for _ in range(n):
                calls[name](batch)
            times[(name, b)].append((time.perf_counter() - start) / n * 1e3)
    return {name: {f"b{b}": float(np.median(times[(name, b)])) for b in (1, 64)} for name in calls}


def through_runtime(path: Path, work: Path, rounds: int, iters: int) -> dict:
    """The int8 artifacts of the default and scan lowerings (engine onnxruntime), timed through
    ``edgecomp_runtime``: ``engine.run`` on scaled windows, ``predict`` on raw ones."""
    model = load_checkpoint(path)
    dataset = dataset_for(model.spec, DATA)
    x, raw = dataset.test.x.astype(np.float32), dataset.raw_inputs("test", imputed=True)
    loaded, sizes = {}, {}
    for lowering in ("default", "scan"):
        config = BuildConfig(precision="int8", options={"lowering": lowering, "engine": "onnx"})
        built = build_artifact(str(path), DATA, config, work / f"{lowering}.edgepkg")
        loaded[lowering] = ecr.load(built.path)
        sizes[lowering] = len(ecr.read_artifact(built.path)[1]["model.onnx"])
    calls = {f"{k} engine": m.engine.run for k, m in loaded.items()}
    latency = _timed(calls, x, rounds, iters)
    calls = {f"{k} predict": m.predict for k, m in loaded.items()}
    latency |= _timed(calls, raw, rounds, iters)
    return {"model_onnx_bytes": sizes, "p50_ms": latency}


def _checkpoint(arch: str, checkpoints: Path | None, tmp: Path, quick: bool) -> Path:
    if checkpoints and (checkpoints / arch / "spec.json").exists():
        return checkpoints / arch
    config = TrainConfig(**{**TRAIN.to_dict(), "arch": arch, **({"epochs": 2} if quick else {})})
    return train_checkpoint(DATA, DATA_CONFIG, config, tmp / f"ckpt-{arch}").path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, help="folder with lstm/ and gru/ checkpoints")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--iters", type=int, default=30, help="batch-1 calls per round")
    parser.add_argument("--quick", action="store_true", help="2-epoch models, 3 short rounds")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.iters = 3, 10
    torch.set_num_threads(1)
    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic's pre-processing hint
    results = {"data": DATA.name, "ort": ort.__version__, "rounds": args.rounds, "models": {}}
    with tempfile.TemporaryDirectory(prefix="recurrent-lowering-") as tmp:
        for arch in ("lstm", "gru"):
            path = _checkpoint(arch, args.checkpoints, Path(tmp), args.quick)
            (Path(tmp) / arch).mkdir()
            row = compare(load_checkpoint(path), Path(tmp) / arch, args.rounds, args.iters)
            row["runtime"] = through_runtime(path, Path(tmp) / arch, args.rounds, args.iters)
            results["models"][arch] = row
            _print(arch, row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


def _print(arch: str, row: dict) -> None:
    print(
        f"{arch} ({row['n_test_windows']} test windows): p50 ms b1 / b64, worst-step MAE change, "
        "bytes"
    )
    for name, v in row["variants"].items():
        ms = v["p50_ms"]
        print(
            f"  {name:<32} {ms['b1']:7.3f} / {ms['b64']:7.2f}   {v['worst_step_mae_change']:+.3%}"
            f"   |y - torch| <= {v['max_abs_diff_vs_torch']:.2g}   {v['bytes']:>7,d}",
            flush=True,
        )
    runtime = row["runtime"]
    print(f"  int8 artifacts through edgecomp_runtime, model.onnx {runtime['model_onnx_bytes']}")
    for name, ms in runtime["p50_ms"].items():
        print(f"  {name:<32} {ms['b1']:7.3f} / {ms['b64']:7.2f}", flush=True)


if __name__ == "__main__":
    main()
