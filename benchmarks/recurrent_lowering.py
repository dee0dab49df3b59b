"""Recurrent lowerings side by side: ONNX Runtime's fused LSTM/GRU op against the hoisted lowering.

    .venv/bin/python benchmarks/recurrent_lowering.py [--checkpoints DIR] [--quick]

For the traffic LSTM and GRU (checkpoints from DIR/<arch>, else trained here as
benchmarks/x86_compare.py trains them), five ONNX models run in one process, interleaved round by
round, one thread each, on the real test windows at batch 1 and 64: the fused export in fp32 and
after ORT's default ``quantize_dynamic``, and the hoisted lowering (targets/onnx/recurrent.py),
unrolled over L in fp32, with int8 input projections only, and with every GEMM int8 (recurrent and
head too), and as one ONNX Scan per layer in fp32 and with every GEMM int8. Each
is scored on the test split (observed values only): worst-step MAE change against the fused fp32
model, and max |difference| from torch. Prints a table; writes
benchmarks/out/recurrent_lowering.json.
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
import onnxruntime as ort
import torch
from onnxruntime.quantization import quantize_dynamic

from edgecomp.checkpoint import load_checkpoint
from edgecomp.data import DataConfig
from edgecomp.frontend import reference_predict
from edgecomp.metrics import horizon_metrics
from edgecomp.targets.onnx.recurrent import hoisted_graph, quantize_hoisted
from edgecomp.targets.onnx.target import export_onnx
from edgecomp.train import TrainConfig
from edgecomp.workflow import dataset_for, train_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "odot_detector_counts_15min.parquet"
DATA_CONFIG = DataConfig(input_len=48, horizon=8, id_col="detector", value_cols=("total",))
TRAIN = TrainConfig(epochs=40, patience=6, lr=2e-3)
OUT = ROOT / "benchmarks" / "out" / "recurrent_lowering.json"


def variants(model, work: Path) -> dict[str, bytes]:
    """name -> ONNX bytes of each lowering of one checkpoint."""
    spec, module = model.spec, model.module.eval()
    fused = export_onnx(module, spec.input_len, spec.n_features, work / "fused.onnx")
    quantize_dynamic(str(fused), str(work / "fused_qd.onnx"))
    hoisted = hoisted_graph(module, spec.input_len, spec.n_features)
    scan = hoisted_graph(module, spec.input_len, spec.n_features, scan=True)
    return {
        "fused fp32": fused.read_bytes(),
        "fused quantize_dynamic": (work / "fused_qd.onnx").read_bytes(),
        "hoisted fp32": hoisted.SerializeToString(),
        "hoisted int8 projection": quantize_hoisted(
            hoisted, projections_only=True
        ).SerializeToString(),
        "hoisted int8 all GEMMs": quantize_hoisted(hoisted).SerializeToString(),
        "hoisted Scan fp32": scan.SerializeToString(),
        "hoisted Scan int8 all GEMMs": quantize_hoisted(scan).SerializeToString(),
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
    sessions = {name: session(data) for name, data in variants(model, work).items()}
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
        }
    return {"n_test_windows": len(x), "variants": rows}


def _interleaved(sessions: dict, x: np.ndarray, rounds: int, iters: int) -> dict:
    times = {(name, b): [] for name in sessions for b in (1, 64)}
    order = random.Random(0)
    for r in range(rounds):
        keys = list(times)
        order.shuffle(keys)
        for name, b in keys:
            batch = x[(r * b) % (len(x) - b) :][:b]
            feeds = {"window": np.ascontiguousarray(batch)}
            sessions[name].run(None, feeds)  # warm
            calls = iters if b == 1 else max(2, iters // 10)
            start = time.perf_counter()
            for _ in range(calls):
                sessions[name].run(None, feeds)
            times[(name, b)].append((time.perf_counter() - start) / calls * 1e3)
    return {
        name: {f"b{b}": float(np.median(times[(name, b)])) for b in (1, 64)} for name in sessions
    }


def _checkpoint(arch: str, checkpoints: Path | None, tmp: Path, quick: bool):
    if checkpoints and (checkpoints / arch / "spec.json").exists():
        return load_checkpoint(checkpoints / arch)
    config = TrainConfig(**{**TRAIN.to_dict(), "arch": arch, **({"epochs": 2} if quick else {})})
    return train_checkpoint(DATA, DATA_CONFIG, config, tmp / f"ckpt-{arch}").model


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
            model = _checkpoint(arch, args.checkpoints, Path(tmp), args.quick)
            (Path(tmp) / arch).mkdir()
            row = compare(model, Path(tmp) / arch, args.rounds, args.iters)
            results["models"][arch] = row
            _print(arch, row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


def _print(arch: str, row: dict) -> None:
    print(f"{arch} ({row['n_test_windows']} test windows): p50 ms b1 / b64, worst-step MAE change")
    for name, v in row["variants"].items():
        ms = v["p50_ms"]
        print(
            f"  {name:<26} {ms['b1']:7.3f} / {ms['b64']:7.2f}   {v['worst_step_mae_change']:+.3%}"
            f"   |y - torch| <= {v['max_abs_diff_vs_torch']:.2g}",
            flush=True,
        )


if __name__ == "__main__":
    main()
