"""The runtime's native recurrent kernel (fp32 and int8) against ONNX Runtime on the same models.

On the traffic LSTM and GRU checkpoints of the accuracy matrix: the native engine at fp32 and int8
(weights packed by ``edgecomp_runtime.native.pack`` from the torch module) against ONNX Runtime's
fp32 session and its default ``quantize_dynamic`` (DynamicQuantizeLSTM for the LSTM; the GRU stays
float: ORT has no int8 GRU kernel), and PyTorch eager, all on one thread, in one process,
interleaved round by round on the same test windows, at batch 1 and 64 (engine calls only: scaled
windows in, scaled forecasts out); also int8 with layer 0's input projection kept in fp32
(``pack(..., input_precision="fp32")``), and int8 as CPUs without AVX512-VNNI run it: on AVX2
(x86-64 Haswell / Zen 1-3: ``Kernel(isa="avx2")``) and on the plain C loops (aarch64:
``Kernel(portable=True)``); ORT's rows stay this host's (its own AVX-512 / VNNI kernels).
Errors: max |difference| from torch fp32 on the test split (scaled units), and each variant's
worst-step MAE change against torch fp32 (raw units, %).

    python benchmarks/native_kernels.py [--rounds 15] [--iters 40] [--archs lstm,gru]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import quantize_dynamic
from x86_peers import session

from edgecomp.bench.host import host_info
from edgecomp.checkpoint import load_checkpoint
from edgecomp.metrics import horizon_metrics
from edgecomp.targets.onnx.target import export_onnx
from edgecomp.workflow import dataset_for
from edgecomp_runtime import native

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "odot_detector_counts_15min.parquet"
CHECKPOINTS = ROOT / "benchmarks" / "out" / "accuracy_budget" / "ckpt-default" / "traffic"
OUT = ROOT / "benchmarks" / "out" / "native_kernels.json"


def pack_module(
    module: torch.nn.Module, precision: str | list[str], input_precision: str | None = None
) -> bytes:
    """The ``.native`` file of an edgecomp LSTM/GRU forecaster (``edgecomp.models``)."""
    rnn = module.rnn
    cell = "lstm" if isinstance(rnn, torch.nn.LSTM) else "gru"
    layers = [
        {
            key: getattr(rnn, f"{name}_l{i}").detach().float().numpy()
            for key, name in (
                ("w_ih", "weight_ih"),
                ("w_hh", "weight_hh"),
                ("b_ih", "bias_ih"),
                ("b_hh", "bias_hh"),
            )
        }
        for i in range(rnn.num_layers)
    ]
    return native.pack(
        cell,
        layers,
        module.head.weight.detach().float().numpy(),
        module.head.bias.detach().float().numpy(),
        input_len=module.input_len,
        n_features=module.n_features,
        target_index=module.target_index.tolist(),
        residual=module.residual,
        precision=precision,
        input_precision=input_precision,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS)
    parser.add_argument("--archs", default="lstm,gru")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if not native.available():
        raise SystemExit(native.unavailable_reason())
    torch.set_num_threads(1)
    results = {
        "host": host_info(),
        "versions": {"onnxruntime": ort.__version__, "torch": torch.__version__},
        "rounds": args.rounds,
        "iters": args.iters,
        "load_average": {"start": os.getloadavg()},
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            res = compare(load_checkpoint(args.checkpoints / arch), Path(tmp) / arch, args)
            results["models"][arch] = res
            _print(arch, res)
    results["load_average"]["end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(results, indent=2))
    tmp_out.replace(args.out)
    print(f"wrote {args.out}")


def compare(model, work: Path, args: argparse.Namespace) -> dict:
    """Time every variant of one checkpoint interleaved; errors against torch fp32."""
    work.mkdir(parents=True)
    module = model.module.eval()
    dataset = dataset_for(model.spec, DATA)
    x = dataset.test.x.astype(np.float32)
    fp32_path = export_onnx(
        module, model.spec.input_len, model.spec.n_features, work / "fp32.onnx", lean=False
    )
    dyn_path = work / "ort_dynamic.onnx"
    quantize_dynamic(str(fp32_path), str(dyn_path))
    fp32_ort, dyn_ort = session(fp32_path), session(dyn_path)
    kernels = {p: native.Kernel(pack_module(module, p)) for p in ("fp32", "int8")}
    # int8 with layer 0's input projection (the window's features) kept in fp32
    kernels["int8_fp32_input"] = native.Kernel(pack_module(module, "int8", "fp32"))
    # the same int8 file as CPUs without VNNI run it
    kernels["int8_avx2"] = native.Kernel(pack_module(module, "int8"), isa="avx2")
    kernels["int8_portable"] = native.Kernel(pack_module(module, "int8"), portable=True)
    variants = {
        "torch_eager_fp32": lambda s: _torch_call(module, s),
        "ort_fp32": lambda s: fp32_ort.run(None, {"window": s})[0],
        "ort_quantize_dynamic": lambda s: dyn_ort.run(None, {"window": s})[0],
        "native_fp32": kernels["fp32"].run,
        "native_int8": kernels["int8"].run,
        "native_int8_fp32_input": kernels["int8_fp32_input"].run,
        "native_int8_avx2": kernels["int8_avx2"].run,
        "native_int8_portable": kernels["int8_portable"].run,
    }
    latency = _interleaved(variants, x, args)
    outputs = {k: _batched(fn, x) for k, fn in variants.items()}
    truth = dataset.raw_targets("test")
    mae = {k: np.asarray(horizon_metrics(truth, dataset.unscale_targets(v))["mae"])
           for k, v in outputs.items()}  # fmt: skip
    ref = outputs["torch_eager_fp32"]
    return {
        "latency_ms": latency,
        "ratios": _ratios(latency),
        "max_abs_vs_torch": {k: float(np.abs(v - ref).max()) for k, v in outputs.items()},
        "worst_step_mae_change_pct": {
            k: float(((v / mae["torch_eager_fp32"] - 1) * 100).max()) for k, v in mae.items()
        },
        "native_int8_vnni": kernels["int8"].vnni,
        "native_int8_isa": {k: kernels[k].isa for k in ("int8", "int8_avx2", "int8_portable")},
        "sizes": {
            "native_fp32": len(pack_module(module, "fp32")),
            "native_int8": len(pack_module(module, "int8")),
            "ort_dynamic_onnx": dyn_path.stat().st_size,
        },
        "test_windows": len(x),
    }


def _ratios(latency: dict) -> dict:
    out = {}
    for b, lat in latency.items():
        mines = ("native_int8", "native_int8_fp32_input", "native_fp32", "native_int8_avx2",
                 "native_int8_portable")  # fmt: skip
        for mine in mines:
            for peer in ("ort_quantize_dynamic", "ort_fp32", "torch_eager_fp32"):
                out[f"{mine}_vs_{peer}_{b}"] = lat[peer]["p50"] / lat[mine]["p50"]
    return out


def _torch_call(module, batch: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return module(torch.from_numpy(batch)).numpy()


def _batched(fn, x: np.ndarray, size: int = 256) -> np.ndarray:
    return np.concatenate(
        [fn(np.ascontiguousarray(x[i : i + size])) for i in range(0, len(x), size)]
    )


def _interleaved(variants: dict, x: np.ndarray, args) -> dict:
    """p50/p99 (ms) per variant and batch; each round times every variant in a new order."""
    times = {b: {name: [] for name in variants} for b in (1, 64)}
    rng = np.random.default_rng(0)
    for _ in range(args.rounds):
        for b in (1, 64):
            start = rng.integers(0, len(x) - b)
            batch = np.ascontiguousarray(x[start : start + b])
            for name in rng.permutation(list(variants)):
                fn = variants[name]
                fn(batch)  # warm-up for this shape
                for _ in range(args.iters):
                    t0 = time.perf_counter_ns()
                    fn(batch)
                    times[b][name].append((time.perf_counter_ns() - t0) / 1e6)
    return {
        f"b{b}": {
            name: {"p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99))}
            for name, v in per.items()
        }
        for b, per in times.items()
    }


def _print(arch: str, res: dict) -> None:
    print(f"\n{arch}: p50 ms (one thread, interleaved)")
    lat = res["latency_ms"]
    for name in lat["b1"]:
        print(
            f"  {name:24s} b1 {lat['b1'][name]['p50']:.4f}  b64 {lat['b64'][name]['p50']:.3f}"
            f"  max|d| vs torch {res['max_abs_vs_torch'][name]:.2e}"
            f"  worst-step MAE {res['worst_step_mae_change_pct'][name]:+.3f} %"
        )
    r = res["ratios"]
    for b in ("b1", "b64"):
        print(
            f"  {b}: native int8 vs ORT dynamic "
            f"{r[f'native_int8_vs_ort_quantize_dynamic_{b}']:.2f}x,"
            f" vs ORT fp32 {r[f'native_int8_vs_ort_fp32_{b}']:.2f}x,"
            f" vs eager {r[f'native_int8_vs_torch_eager_fp32_{b}']:.2f}x;"
            f" native fp32 vs ORT fp32 {r[f'native_fp32_vs_ort_fp32_{b}']:.2f}x"
        )
        print(
            f"  {b}: without VNNI, native int8 vs ORT dynamic: AVX2 "
            f"{r[f'native_int8_avx2_vs_ort_quantize_dynamic_{b}']:.2f}x, portable "
            f"{r[f'native_int8_portable_vs_ort_quantize_dynamic_{b}']:.2f}x"
        )


if __name__ == "__main__":
    main()
