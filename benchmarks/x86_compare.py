"""x86 side by side: PyTorch eager fp32, ONNX Runtime fp32, the edgecomp int8 artifact (through the
runtime) and its peers, ONNX Runtime's default `quantize_dynamic` and `quantize_static`, OpenVINO
fp32 and OpenVINO + NNCF int8 (see x86_peers.py), on the traffic LSTM, GRU and TCN; and the floor:
each model's multiply-accumulates over the host's measured single-thread GEMV/GEMM throughput.

All variants run in one process, interleaved round by round, one thread each, on the same real test
windows, so the ratios are fair on a noisy shared machine. Prints a table and writes JSON.

    python benchmarks/x86_compare.py [--checkpoints examples/traffic/out/checkpoints] [--quick]
        [--before REV]

``--before REV`` adds the runtime's ``predict`` and engine as of git revision REV (its model.py and
engines/onnxruntime.py, on the same artifact) to the same interleaved run, so a runtime change is
timed before and after side by side.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from executorch_rows import add_variants, print_summary, summary
from onnxruntime.quantization import quantize_dynamic
from x86_peers import add_peers, count_macs, floor_multiples, host_throughput, session, versions

import edgecomp_runtime
from edgecomp.bench.host import host_info
from edgecomp.checkpoint import load_checkpoint
from edgecomp.data import DataConfig
from edgecomp.metrics import horizon_metrics
from edgecomp.pipeline import BuildConfig, build, calibration_windows
from edgecomp.targets.onnx.target import export_onnx
from edgecomp.train import TrainConfig
from edgecomp.workflow import dataset_for, train_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "odot_detector_counts_15min.parquet"
DATA_CONFIG = DataConfig(input_len=48, horizon=8, id_col="detector", value_cols=("total",))
TRAIN = TrainConfig(epochs=40, patience=6, lr=2e-3)


def main() -> None:
    parser = model_parser(__doc__, rounds=15, iters=40, out="x86_compare.json")
    parser.add_argument("--before", help="git revision whose runtime predict is timed alongside")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.throughput = host_throughput()
    results = {
        "host": host_info(),
        "data": DATA.name,
        "rounds": args.rounds,
        "iters": args.iters,
        "peers": versions(),
        "throughput": args.throughput,
        "before": args.before,
        "load_average": {"start": os.getloadavg()},
        "models": {},
    }
    print("host single-thread GMAC/s:", _gmacs(args.throughput["best"]))
    run_models(args, compare, _print, results)


def model_parser(doc: str, *, rounds: int, iters: int, out: str) -> argparse.ArgumentParser:
    """The options every per-model comparison takes (also used by arm_compare.py)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(
        "--checkpoints", type=Path, help="folder with lstm/, gru/, tcn/ checkpoints"
    )
    parser.add_argument("--archs", default="lstm,gru,tcn")
    parser.add_argument("--rounds", type=int, default=rounds, help="interleaved rounds")
    parser.add_argument("--iters", type=int, default=iters, help="timed calls per variant/round")
    parser.add_argument("--quick", action="store_true", help="2-epoch models, 3 short rounds")
    parser.add_argument(
        "--executorch-archs", default="tcn", help="ExecuTorch rows for (LSTM: ~20 min to build)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / out)
    return parser


def run_models(args: argparse.Namespace, compare_fn, print_fn, results: dict) -> None:
    """Compare each architecture (checkpoint or a fresh model), print it, write the JSON."""
    if args.quick:
        args.rounds, args.iters = 3, 5
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs.split(","):
            model = _checkpoint(arch, args, Path(tmp))
            results["models"][arch] = compare_fn(model, Path(tmp) / arch, args)
            print_fn(arch, results["models"][arch])
    if "load_average" in results:
        results["load_average"]["end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


def _checkpoint(arch: str, args: argparse.Namespace, tmp: Path):
    if args.checkpoints and (args.checkpoints / arch / "spec.json").exists():
        return load_checkpoint(args.checkpoints / arch)
    config = TrainConfig(
        **{**TRAIN.to_dict(), "arch": arch, **({"epochs": 2} if args.quick else {})}
    )
    return train_checkpoint(DATA, DATA_CONFIG, config, tmp / f"ckpt-{arch}").model


def compare(model, work: Path, args: argparse.Namespace) -> dict:
    """Build the variants of one model, time them interleaved, and measure their test error."""
    work.mkdir(parents=True)
    dataset = dataset_for(model.spec, DATA)
    x, raw_x = dataset.test.x, dataset.raw_inputs("test")
    truth = dataset.raw_targets("test")
    # the peers start from a plain export (simplified, not thinned the way edgecomp's build is)
    fp32_path = export_onnx(
        model.module, model.spec.input_len, model.spec.n_features, work / "fp32.onnx", lean=False
    )
    dyn_path = work / "ort_dynamic.onnx"
    quantize_dynamic(str(fp32_path), str(dyn_path))
    artifact = build(model, dataset, BuildConfig(precision="int8"), work / "int8.edgepkg").path
    fp32_artifact = build(model, dataset, BuildConfig(precision="fp32"), work / "fp32.edgepkg").path
    runtime_model = edgecomp_runtime.load(artifact, threads=1)
    native = _native_model(model, dataset, work)  # LSTM/GRU where the native kernel is built
    module = model.module.eval()
    fp32, dyn = session(fp32_path), session(dyn_path)
    # Each variant takes (scaled, raw) windows; only the runtime's predict() uses the raw ones.
    variants = {
        "torch_eager_fp32": lambda s, r: _torch_call(module, s),
        "ort_fp32": lambda s, r: fp32.run(None, {"window": s})[0],
        "edgecomp_int8_predict": lambda s, r: runtime_model.predict(r),
        "edgecomp_int8_engine": lambda s, r: runtime_model.run_scaled(s),
        "ort_quantize_dynamic": lambda s, r: dyn.run(None, {"window": s})[0],
        # the same job as predict(): raw in, raw out, with the user's own numpy scaling
        "ort_quantize_dynamic_raw": lambda s, r: _raw_call(dyn, r, dataset),
    }
    if native is not None:  # the native lowering's build, side by side with the chosen one
        variants[NATIVE_ROW] = lambda s, r: native.run_scaled(s)
    if getattr(args, "before", None):
        before = _before_model(args.before, artifact, work)
        variants["edgecomp_int8_predict_before"] = lambda s, r: before.predict(r)
        variants["edgecomp_int8_engine_before"] = lambda s, r: before.run_scaled(s)
    calibration = calibration_windows(dataset, BuildConfig().calibration_windows)
    peers = add_peers(fp32_path, calibration, work, variants)
    executorch = add_variants(model, dataset, "x86-64-executorch", work, variants, args)
    latency = _interleaved(variants, x, dataset.raw_inputs("test", imputed=True), args)
    macs = count_macs(fp32_path)
    sizes = {
        "fp32_onnx": fp32_path.stat().st_size,
        "ort_dynamic_onnx": dyn_path.stat().st_size,
        "edgecomp_int8_model": len(edgecomp_runtime.read_artifact(artifact)[1]["model.onnx"]),
        "edgecomp_int8_native_file": len(
            edgecomp_runtime.read_artifact(artifact)[1].get("model.native", b"")
        ),
        "edgecomp_int8_artifact": artifact.stat().st_size,
        "edgecomp_fp32_artifact": fp32_artifact.stat().st_size,
    }
    scaled_out = {
        k: _batched(variants[k], x)
        for k in ("torch_eager_fp32", "ort_fp32", "ort_quantize_dynamic", *PEERS[2:], NATIVE_ROW)
        if k in variants
    }
    outputs = {k: dataset.unscale_targets(v) for k, v in scaled_out.items()}
    outputs["edgecomp_int8_predict"] = runtime_model.predict(raw_x)
    mae = {k: horizon_metrics(truth, v)["mae"] for k, v in outputs.items()}
    executorch = summary(executorch, raw_x, truth, mae)
    lowering = runtime_model.manifest["recipe"]["lowering"]
    return {
        "latency_ms": latency,
        "sizes": sizes,
        "mae": mae,
        "ratios": {**_ratios(latency, sizes, mae), **_peer_ratios(latency, mae)},
        "predict_overhead_us": _overhead(latency),
        "peers": peers,
        "edgecomp_engine": {
            "engine": runtime_model.backend,
            "lowering": lowering.get("candidate_lowering"),
            "equivalent_engines": lowering.get("equivalent_engines"),
            "chosen": lowering.get("candidates", {}).get("chosen"),
            "measured_at_build": lowering.get("candidates", {}).get("measured"),
        },
        "macs": {"by_op": macs, "total_b1": sum(macs.values())},
        "floor": floor_multiples(latency, sum(macs.values()), args.throughput),
        "executorch": executorch,
    }


NATIVE_ROW = "edgecomp_native_int8_engine"  # ("int8" in the name: timed against the int8 floor)


def _native_model(model, dataset, work: Path):
    """The int8 build with option lowering=native, loaded; None where that lowering does not apply
    (not an LSTM/GRU) or the native kernel is not built here."""
    from edgecomp.targets.onnx import native

    if not (native.applies(type(model.module), "int8") and native.available()):
        return None
    config = BuildConfig(precision="int8", options={"lowering": "native"})
    path = build(model, dataset, config, work / "int8_native.edgepkg").path
    return edgecomp_runtime.load(path, threads=1)


def _before_model(rev: str, artifact: Path, work: Path):
    """The runtime's Model and onnxruntime engine as of git revision ``rev`` on ``artifact``."""
    modules = {}
    for name in ("model", "engines/onnxruntime"):
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:runtime/edgecomp_runtime/{name}.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        path = work / f"before_{name.replace('/', '_')}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(f"before_{path.stem}", path)
        modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modules[name])
    now = edgecomp_runtime.load(artifact, threads=1)
    if now.backend != "onnx":
        raise SystemExit(f"--before times the onnxruntime engine; {artifact} runs on {now.backend}")
    manifest, files = edgecomp_runtime.read_artifact(artifact)
    engine = modules["engines/onnxruntime"].OnnxRuntimeEngine(
        files[manifest["model_file"]], manifest, threads=1
    )
    model = modules["model"].Model(manifest, engine, backend="onnx", threads=1)
    model._input_range, model.range_factor = now._input_range, now.range_factor
    return model


def _overhead(latency: dict) -> dict:
    """What predict (raw in/out) adds over the engine call (scaled in/out), in us, per batch."""
    out: dict = {}
    for b, lat in latency.items():
        for tag in ("", "_before"):
            if f"edgecomp_int8_predict{tag}" in lat:
                predict, engine = (
                    lat[f"edgecomp_int8_{k}{tag}"]["p50"] for k in ("predict", "engine")
                )
                out.setdefault(b, {})[tag.strip("_") or "now"] = (predict - engine) * 1e3
    return out


# the peers of issue 21 item 1 (plus ORT fp32 and quantize_dynamic): engines, scaled windows in
PEERS = (
    "ort_fp32",
    "ort_quantize_dynamic",
    "ort_quantize_static",
    "openvino_fp32",
    "openvino_nncf_int8",
)


def _peer_ratios(latency: dict, mae: dict) -> dict:
    """The fastest peer per batch, and how much faster edgecomp's predict (raw in/out) is."""
    ref = np.asarray(mae["torch_eager_fp32"])
    out: dict = {}
    for b in ("b1", "b64"):
        lat = latency[b]
        fastest = min((p for p in PEERS if p in lat), key=lambda p: lat[p]["p50"])
        out[f"fastest_peer_{b}"] = fastest
        out[f"vs_fastest_peer_{b}"] = lat[fastest]["p50"] / lat["edgecomp_int8_predict"]["p50"]
        out[f"engine_vs_fastest_peer_{b}"] = (
            lat[fastest]["p50"] / lat["edgecomp_int8_engine"]["p50"]
        )
        if NATIVE_ROW in lat:
            out[f"native_engine_vs_fastest_peer_{b}"] = lat[fastest]["p50"] / lat[NATIVE_ROW]["p50"]
    for name in PEERS[2:]:
        if name in mae:
            out[f"{name}_mae_change_pct"] = ((np.asarray(mae[name]) / ref - 1) * 100).tolist()
    if NATIVE_ROW in mae:
        out["native_worst_step_change_pct"] = float(
            np.max(np.asarray(mae[NATIVE_ROW]) / ref - 1) * 100
        )
    out["edgecomp_int8_worst_step_change_pct"] = max(
        ((np.asarray(mae["edgecomp_int8_predict"]) / ref - 1) * 100).tolist()
    )
    return out


def _gmacs(best: dict) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in best.items())


def _torch_call(module, batch: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return module(torch.from_numpy(batch)).numpy()


def _raw_call(session: ort.InferenceSession, raw: np.ndarray, dataset) -> np.ndarray:
    scaled = ((raw - dataset.mean) / dataset.std).astype(np.float32)
    return dataset.unscale_targets(session.run(None, {"window": scaled})[0])


def _batched(fn, x: np.ndarray, size: int = 256) -> np.ndarray:
    return np.concatenate([fn(x[i : i + size], None) for i in range(0, len(x), size)])


def _interleaved(variants: dict, x, filled_x, args) -> dict:
    """p50/p99 per variant and batch size; each round times every variant once, in turn.

    Timing uses gap-free raw windows (``filled_x``) so that the runtime's imputation, which a
    bare ORT session does not do, is not what the comparison measures.
    """
    times = {b: {name: [] for name in variants} for b in (1, 64)}
    rng = np.random.default_rng(0)
    for _ in range(args.rounds):
        for b in (1, 64):
            idx = rng.integers(0, len(x) - b)
            scaled, raw = x[idx : idx + b], filled_x[idx : idx + b]
            for name in rng.permutation(list(variants)):  # vary the order round to round
                fn = variants[name]
                fn(scaled, raw)  # warm-up for this shape
                for _ in range(args.iters):
                    t0 = time.perf_counter_ns()
                    fn(scaled, raw)
                    times[b][name].append((time.perf_counter_ns() - t0) / 1e6)
    return {
        f"b{b}": {
            name: {"p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99))}
            for name, v in per.items()
        }
        for b, per in times.items()
    }


def _ratios(latency: dict, sizes: dict, mae: dict) -> dict:
    ref = np.asarray(mae["torch_eager_fp32"])
    out = {}
    for b in ("b1", "b64"):
        lat = latency[b]
        out[f"speedup_vs_torch_{b}"] = (
            lat["torch_eager_fp32"]["p50"] / lat["edgecomp_int8_predict"]["p50"]
        )
        out[f"engine_speedup_vs_torch_{b}"] = (
            lat["torch_eager_fp32"]["p50"] / lat["edgecomp_int8_engine"]["p50"]
        )
        out[f"vs_ort_dynamic_raw_{b}"] = (
            lat["ort_quantize_dynamic_raw"]["p50"] / lat["edgecomp_int8_predict"]["p50"]
        )
        out[f"engine_vs_ort_dynamic_{b}"] = (
            lat["ort_quantize_dynamic"]["p50"] / lat["edgecomp_int8_engine"]["p50"]
        )
        out[f"vs_ort_dynamic_{b}"] = (
            lat["ort_quantize_dynamic"]["p50"] / lat["edgecomp_int8_predict"]["p50"]
        )
    out["int8_size_fraction_of_fp32"] = sizes["edgecomp_int8_model"] / sizes["fp32_onnx"]
    out["int8_artifact_fraction_of_fp32"] = (
        sizes["edgecomp_int8_artifact"] / sizes["edgecomp_fp32_artifact"]
    )
    out["ort_dynamic_size_fraction_of_fp32"] = sizes["ort_dynamic_onnx"] / sizes["fp32_onnx"]
    for name in ("edgecomp_int8_predict", "ort_quantize_dynamic", "ort_fp32"):
        out[f"{name}_mae_change_pct"] = ((np.asarray(mae[name]) / ref - 1) * 100).tolist()
    return out


def _print(arch: str, res: dict) -> None:
    floor = res["floor"]
    print(
        f"\n== {arch} ==  {res['macs']['total_b1'] / 1e6:.2f} M MAC/window; edgecomp engine "
        f"{res['edgecomp_engine']['engine']} (lowering {res['edgecomp_engine']['lowering']}); "
        "p50 latency (ms) b1 / b64, x floor b1 / b64"
    )
    for name in res["latency_ms"]["b1"]:
        print(
            f"  {name:<30} {res['latency_ms']['b1'][name]['p50']:8.3f} "
            f"{res['latency_ms']['b64'][name]['p50']:9.3f}   "
            f"{floor['multiple']['b1'][name]:6.2f}x {floor['multiple']['b64'][name]:6.2f}x"
        )
    r = res["ratios"]
    ms = floor["floor_ms"]
    print(
        f"  floor ms fp32 {ms['b1']['fp32']:.4f} / {ms['b64']['fp32']:.3f}, "
        f"int8 {ms['b1']['int8']:.4f} / {ms['b64']['int8']:.3f}; "
        f"predict vs fastest peer: {r['vs_fastest_peer_b1']:.2f}x ({r['fastest_peer_b1']}, b1), "
        f"{r['vs_fastest_peer_b64']:.2f}x ({r['fastest_peer_b64']}, b64); worst-step MAE "
        f"{r['edgecomp_int8_worst_step_change_pct']:+.2f} %"
    )
    print(
        f"  int8 predict() vs torch eager: {r['speedup_vs_torch_b1']:.2f}x (b1), "
        f"{r['speedup_vs_torch_b64']:.2f}x (b64)\n"
        f"  vs ORT quantize_dynamic, engine to engine: {r['engine_vs_ort_dynamic_b1']:.2f}x (b1), "
        f"{r['engine_vs_ort_dynamic_b64']:.2f}x (b64); raw in/out both: "
        f"{r['vs_ort_dynamic_raw_b1']:.2f}x (b1), {r['vs_ort_dynamic_raw_b64']:.2f}x (b64); "
        f"predict() vs bare session: {r['vs_ort_dynamic_b1']:.2f}x (b1)"
    )
    print(
        f"  size int8/fp32 model {r['int8_size_fraction_of_fp32']:.1%}, "
        f"artifact {r['int8_artifact_fraction_of_fp32']:.1%} "
        f"(ORT dynamic {r['ort_dynamic_size_fraction_of_fp32']:.1%}); MAE change per horizon % "
        + " ".join(f"{v:+.2f}" for v in r["edgecomp_int8_predict_mae_change_pct"])
    )
    over = res.get("predict_overhead_us", {})
    print(
        "  predict - engine (us): "
        + ", ".join(
            f"{b} " + " / ".join(f"{k} {v:.1f}" for k, v in d.items()) for b, d in over.items()
        )
    )
    print_summary(res)


if __name__ == "__main__":
    main()
