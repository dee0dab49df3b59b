"""ARM-side comparison, measured on the x86 host: PyTorch eager fp32, LiteRT fp32, the edgecomp
full-int8 and int4 .tflite artifacts (through the runtime), and the peers a user of LiteRT would
reach for: litert-torch's default PT2E int8, and ai-edge-quantizer's own default recipes
(``dynamic_wi8_afp32``: dynamic-range int8; ``static_wi8_ai8``: full integer, its default
moving-average calibration) applied to litert-torch's plain conversion; plus ExecuTorch (XNNPACK)
for --executorch-archs. ONNX Runtime on aarch64 is not measured here (it needs an ARM host; the
x86 numbers are in x86_compare.py). Batch 1 and 64, sizes, per-step error, on the traffic LSTM,
GRU and TCN.

The latencies are LiteRT's x86 kernels on this machine, not an ARM board's (and emulated aarch64
timings would mean nothing): read them as ratios between variants in one run. Sizes and
per-horizon errors are what the ARM device gets. All variants run in one process, interleaved
round by round, one thread each, on the same real test windows. Prints a table, writes JSON.

The batch figure (b64 <= 64 x b1 / 4) is also measured in CPU time (``time.process_time``, the
engines run one thread): what the engine computes, without the time a loaded shared host keeps
the process waiting, which the wall-clock p50 of a short --quick run is dominated by.

    python benchmarks/arm_compare.py [--checkpoints examples/traffic/out/checkpoints] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from executorch_rows import add_variants, print_summary, summary  # noqa: E402
from x86_compare import (  # noqa: E402
    _batched,
    _interleaved,
    _torch_call,
    model_parser,
    run_models,
)

import edgecomp_runtime  # noqa: E402
from edgecomp.bench.host import host_info  # noqa: E402
from edgecomp.metrics import horizon_metrics  # noqa: E402
from edgecomp.pipeline import BuildConfig, build, calibration_windows  # noqa: E402
from edgecomp.targets.tflite.convert import compact, quiet  # noqa: E402
from edgecomp.targets.tflite.loop import supports  # noqa: E402
from edgecomp.targets.tflite.target import io_spec  # noqa: E402
from edgecomp.workflow import dataset_for  # noqa: E402
from edgecomp_runtime.engines.litert import LiteRtEngine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "odot_detector_counts_15min.parquet"
TARGET = "rpi5-cortex-a76"
MODEL_FILE = "model.tflite"
UNROLLED = {"recurrent_lowering": "unrolled"}  # the lowering before the WHILE loop (loop.py)
PT2E = ("litert_torch_pt2e_int8",)
BATCH_ENGINES = ("litert_fp32", "edgecomp_int8_engine", "edgecomp_int4_engine")
CPU_ROUNDS = 9  # interleaved rounds of the CPU-time batch figure
CPU_CALLS = {1: 40, 64: 3, 100: 2}  # timed calls per engine, batch size and round (100: a
# batch that is not a multiple of the engine's batch_rows, so its remainder path runs)
AEQ = {  # peer name -> ai-edge-quantizer's default recipe (on litert-torch's plain conversion)
    "aeq_default_dynamic_int8": "dynamic_wi8_afp32",
    "aeq_default_static_int8": "static_wi8_ai8",
}


def main() -> None:
    args = _args()
    torch.set_num_threads(1)
    results = {
        "host": host_info(),
        "note": "LiteRT measured on this x86 host, not on an ARM CPU: compare ratios only",
        "target": TARGET,
        "weight_granularity": args.weight_granularity or "profile default",
        "data": DATA.name,
        "rounds": args.rounds,
        "models": {},
    }
    run_models(args, compare, _print, results)


def _args() -> argparse.Namespace:
    parser = model_parser(__doc__, rounds=10, iters=20, out="arm_compare.json")
    parser.add_argument(
        "--weight-granularity",
        choices=("tensorwise", "channelwise"),
        help="override the profile's full-int8 weight granularity",
    )
    return parser.parse_args()


def compare(model, work: Path, args: argparse.Namespace) -> dict:
    """Build the variants of one model, time them interleaved, and measure their test error."""
    work.mkdir(parents=True)
    dataset = dataset_for(model.spec, DATA)
    x, raw_x, truth = dataset.test.x, dataset.raw_inputs("test"), dataset.raw_targets("test")
    options = {"weight_granularity": args.weight_granularity} if args.weight_granularity else {}
    build_s: dict[str, float] = {}

    def timed(p: str, name: str, extra: dict) -> Any:
        start = time.perf_counter()
        config = BuildConfig(target=TARGET, precision=p, options={**options, **extra})
        artifact = build(model, dataset, config, work / f"{name}.edgepkg")
        build_s[name] = round(time.perf_counter() - start, 2)
        return artifact

    artifacts = {p: timed(p, p, {}) for p in ("fp32", "int8", "int4")}
    # recurrent models: the old unrolled lowering side by side with the loop (the default)
    unrolled = (
        {p: timed(p, f"unrolled_{p}", UNROLLED) for p in ("fp32", "int8", "int4")}
        if supports(model.module)
        else {}
    )
    fp32, int8, int4 = (
        edgecomp_runtime.load(artifacts[p].path, threads=1) for p in ("fp32", "int8", "int4")
    )
    module = model.module.eval()
    variants = {  # each takes (scaled, raw) windows; only predict() uses the raw ones
        "torch_eager_fp32": lambda s, r: _torch_call(module, s),
        "litert_fp32": lambda s, r: fp32.run_scaled(s),
        "edgecomp_int8_predict": lambda s, r: int8.predict(r),
        "edgecomp_int8_engine": lambda s, r: int8.run_scaled(s),
        "edgecomp_int4_engine": lambda s, r: int4.run_scaled(s),
    }
    for p, artifact in unrolled.items():
        engine = edgecomp_runtime.load(artifact.path, threads=1)
        variants[f"unrolled_{p}_engine"] = lambda s, r, e=engine: e.run_scaled(s)
    sizes = {
        "fp32_tflite": _model_size(artifacts["fp32"].path),
        "edgecomp_int8_tflite": _model_size(artifacts["int8"].path),
        "edgecomp_int4_tflite": _model_size(artifacts["int4"].path),
        "fp32_artifact": artifacts["fp32"].path.stat().st_size,
        "int8_artifact": artifacts["int8"].path.stat().st_size,
    } | {f"unrolled_{p}_tflite": _model_size(a.path) for p, a in unrolled.items()}
    lowering = {p: artifacts[p].manifest["recipe"]["lowering"] for p in artifacts}
    pt2e_error = _add_pt2e(model, dataset, variants, sizes)
    aeq_errors = _add_aeq_defaults(model, dataset, variants, sizes)
    executorch = add_variants(model, dataset, "aarch64-executorch", work, variants, args)
    latency = _interleaved(variants, x, dataset.raw_inputs("test", imputed=True), args)
    engines = [*BATCH_ENGINES, *(f"unrolled_{p}_engine" for p in unrolled)]
    batch_cpu = _batch_cpu({name: variants[name] for name in engines}, x)
    outputs = {
        k: dataset.unscale_targets(_batched(variants[k], x))
        for k in variants
        if k not in ("edgecomp_int8_predict", "edgecomp_int8_engine")
    }  # the int4 engine's outputs are scaled: unscaled above like the others
    outputs["edgecomp_int8_predict"] = int8.predict(raw_x)
    mae = {k: horizon_metrics(truth, v)["mae"] for k, v in outputs.items()}
    executorch = summary(executorch, raw_x, truth, mae)
    return {
        "latency_ms": latency,
        "build_s": build_s,
        "recurrent_lowering": {p: low.get("recurrent_lowering") for p, low in lowering.items()},
        "sizes": sizes,
        "mae": mae,
        "batch_rows": {p: low.get("batch_rows", 1) for p, low in lowering.items()},
        "batch_min_rows": {p: low.get("batch_min_rows", 0) for p, low in lowering.items()},
        "int4_groups": lowering["int4"]["quantization"].get("int4_groups"),
        "pt2e_error": pt2e_error,
        "aeq_errors": aeq_errors,
        "batch_cpu_ms": batch_cpu,
        "ratios": _ratios(latency, sizes, mae) | _cpu_ratios(batch_cpu),
        "executorch": executorch,
    }


def _batch_cpu(engines: dict, x: np.ndarray) -> dict:
    """Median CPU ms per call of each engine at each batch of ``CPU_CALLS``, interleaved round
    by round."""
    times: dict[str, dict[int, list[float]]] = {
        name: {b: [] for b in CPU_CALLS} for name in engines
    }
    for fn in engines.values():
        fn(x[: max(CPU_CALLS)], None)  # the batch-N interpreters are made on first use
    for round_ in range(CPU_ROUNDS):
        for name, fn in engines.items():
            for b, calls in CPU_CALLS.items():
                batch = x[round_ : round_ + b]
                start = time.process_time()
                for _ in range(calls):
                    fn(batch, None)
                times[name][b].append((time.process_time() - start) / calls * 1e3)
    return {
        name: {f"b{b}": float(np.median(v)) for b, v in per.items()} for name, per in times.items()
    }


def _cpu_ratios(batch_cpu: dict) -> dict:
    return {
        f"{name}_b64_over_16x_b1_cpu": t["b64"] / (16 * t["b1"]) for name, t in batch_cpu.items()
    }


def _add_pt2e(model, dataset, variants: dict, sizes: dict) -> str | None:
    """Add litert-torch's PT2E int8 to ``variants`` and ``sizes``; or return why it failed."""
    try:
        data = pt2e_int8(model, calibration_windows(dataset, 256))
    except Exception as exc:  # a toolchain failure is a result: report it, keep the rest
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    engine = LiteRtEngine(data, _manifest(data, model.spec), threads=1)
    variants[PT2E[0]] = lambda s, r: engine.run(s)
    sizes[f"{PT2E[0]}_tflite"] = len(data)
    return None


def _add_aeq_defaults(model, dataset, variants: dict, sizes: dict) -> dict:
    """Add ai-edge-quantizer's default recipes on litert-torch's plain conversion (batch 1, one
    invoke per window, as a user of the two tools gets); returns failures by peer name."""
    from ai_edge_quantizer import quantizer, recipe

    from edgecomp.targets.tflite.convert import SIGNATURE, convert_module, signature_names

    spec = model.spec
    source = convert_module(model.module.eval(), spec.input_len, spec.n_features)
    windows = calibration_windows(dataset, 256)
    errors = {}
    for name, recipe_name in AEQ.items():
        try:
            with quiet():
                engine = quantizer.Quantizer(source, getattr(recipe, recipe_name)())
                ranges = None
                if engine.need_calibration:
                    key = signature_names(source)[0]
                    data = {SIGNATURE: [{key: w[None]} for w in windows]}
                    ranges = engine.calibrate(data, num_threads=1)
                data = compact(bytes(engine.quantize(ranges).quantized_model))
        except Exception as exc:  # a toolchain failure is a result: report it, keep the rest
            errors[name] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            continue
        runner = LiteRtEngine(data, _manifest(data, spec), threads=1)
        variants[name] = lambda s, r, runner=runner: runner.run(s)
        sizes[f"{name}_tflite"] = len(data)
    return errors


def pt2e_int8(model, windows: np.ndarray) -> bytes:
    """litert-torch's documented PT2E flow with its default (per-tensor symmetric) config."""
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e

    sample = (torch.from_numpy(windows[:1]),)
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config()
    )
    with quiet(), torch.no_grad():
        graph = torch.export.export(model.module.eval(), sample).module()
        graph = quantize_pt2e.prepare_pt2e(graph, quantizer)
        for window in windows:
            graph(torch.from_numpy(window[None]))
        graph = quantize_pt2e.convert_pt2e(graph, fold_quantize=False)
        edge = litert_torch.convert(
            graph, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer)
        )
    return compact(bytes(edge.model_content()))


def _manifest(data: bytes, spec) -> dict:
    return {"model_file": MODEL_FILE, "io": io_spec(data, spec), "recipe": {"lowering": {}}}


def _model_size(path: Path) -> int:
    return len(edgecomp_runtime.read_artifact(path)[1][MODEL_FILE])


def _ratios(latency: dict, sizes: dict, mae: dict) -> dict:
    ref = np.asarray(mae["torch_eager_fp32"])
    litert = np.asarray(mae["litert_fp32"])
    pt2e = PT2E if PT2E[0] in mae else ()
    peers = (*pt2e, *(name for name in AEQ if name in mae))
    out = {}
    for name in ("litert_fp32", "edgecomp_int8_engine", "edgecomp_int4_engine"):
        # the batch figure: b64 <= 64 x b1 / 4, i.e. this ratio <= 1
        out[f"{name}_b64_over_16x_b1"] = latency["b64"][name]["p50"] / (
            16 * latency["b1"][name]["p50"]
        )
    for b in ("b1", "b64"):
        lat = latency[b]
        for name in ("litert_fp32", "edgecomp_int8_engine", *peers):
            out[f"{name}_speedup_vs_torch_{b}"] = lat["torch_eager_fp32"]["p50"] / lat[name]["p50"]
        for name in pt2e:
            out[f"int8_engine_vs_pt2e_{b}"] = lat[name]["p50"] / lat["edgecomp_int8_engine"]["p50"]
    for name in ("unrolled_fp32_engine", "unrolled_int8_engine", "unrolled_int4_engine"):
        if name in latency["b1"]:
            out[f"{name}_b64_over_16x_b1"] = latency["b64"][name]["p50"] / (
                16 * latency["b1"][name]["p50"]
            )
            out[f"{name}_mae_change_pct"] = ((np.asarray(mae[name]) / ref - 1) * 100).tolist()
    for p in ("int8", "int4"):
        if f"unrolled_{p}_tflite" in sizes:
            out[f"unrolled_{p}_size_fraction_of_unrolled_fp32"] = (
                sizes[f"unrolled_{p}_tflite"] / sizes["unrolled_fp32_tflite"]
            )
    out["int8_size_fraction_of_fp32"] = sizes["edgecomp_int8_tflite"] / sizes["fp32_tflite"]
    out["int4_size_fraction_of_fp32"] = sizes["edgecomp_int4_tflite"] / sizes["fp32_tflite"]
    for name in pt2e:
        out["pt2e_size_fraction_of_fp32"] = sizes[f"{name}_tflite"] / sizes["fp32_tflite"]
    for name in peers:
        out[f"{name}_size_fraction_of_fp32"] = sizes[f"{name}_tflite"] / sizes["fp32_tflite"]
    for name in ("litert_fp32", "edgecomp_int8_predict", "edgecomp_int4_engine", *peers):
        out[f"{name}_mae_change_pct"] = ((np.asarray(mae[name]) / ref - 1) * 100).tolist()
    out["int8_mae_change_vs_litert_fp32_pct"] = (
        (np.asarray(mae["edgecomp_int8_predict"]) / litert - 1) * 100
    ).tolist()
    return out


def _print(arch: str, res: dict) -> None:
    print(f"\n== {arch} ==  p50 latency (ms) on this x86 host, b1 / b64")
    for name in res["latency_ms"]["b1"]:
        print(
            f"  {name:<24} {res['latency_ms']['b1'][name]['p50']:8.3f} "
            f"{res['latency_ms']['b64'][name]['p50']:9.3f}"
        )
    r, s = res["ratios"], res["sizes"]
    print(
        f"  .tflite size: fp32 {s['fp32_tflite']:,} B, edgecomp int8 {s['edgecomp_int8_tflite']:,}"
        f" B ({r['int8_size_fraction_of_fp32']:.1%}), int4 {s['edgecomp_int4_tflite']:,} B "
        f"({r['int4_size_fraction_of_fp32']:.1%}; groups {res['int4_groups']})"
    )
    for name in AEQ:
        if f"{name}_tflite" in s:
            frac = r[f"{name}_size_fraction_of_fp32"]
            print(f"  {name} .tflite {s[f'{name}_tflite']:,} B ({frac:.1%})")
        else:
            print(f"  {name} failed: {res['aeq_errors'].get(name)}")
    print(f"  windows per invoke: {res['batch_rows']}; build s: {res['build_s']}")
    for p in ("int8", "int4"):
        if f"unrolled_{p}_tflite" in s:
            frac = r[f"unrolled_{p}_size_fraction_of_unrolled_fp32"]
            print(
                f"  unrolled lowering: fp32 {s['unrolled_fp32_tflite']:,} B, {p} "
                f"{s[f'unrolled_{p}_tflite']:,} B ({frac:.1%})"
            )
    unrolled = [n for n in ("unrolled_fp32_engine", "unrolled_int8_engine", "unrolled_int4_engine")
                if f"{n}_b64_over_16x_b1" in r]  # fmt: skip
    for name in ("litert_fp32", "edgecomp_int8_engine", "edgecomp_int4_engine", *unrolled):
        cpu = res["batch_cpu_ms"][name]
        print(
            f"  {name}: b64 / (16 x b1) = {r[f'{name}_b64_over_16x_b1']:.2f} wall, "
            f"{r[f'{name}_b64_over_16x_b1_cpu']:.2f} CPU time ({cpu['b1']:.3f} / "
            f"{cpu['b64']:.3f} ms) (aim <= 1); b100 {cpu.get('b100', float('nan')):.3f} ms"
        )
    for name in (
        "litert_fp32", "edgecomp_int8_predict", "edgecomp_int4_engine", *unrolled, *PT2E, *AEQ
    ):  # fmt: skip
        if f"{name}_mae_change_pct" in r:
            change = " ".join(f"{v:+.2f}" for v in r[f"{name}_mae_change_pct"])
            print(f"  MAE change vs torch per horizon, % {name:<24} {change}")
    if res["pt2e_error"]:
        print(f"  litert-torch PT2E int8 failed: {res['pt2e_error']}")
    else:
        print(
            f"  PT2E int8 .tflite {s[f'{PT2E[0]}_tflite']:,} B "
            f"({r['pt2e_size_fraction_of_fp32']:.1%}); int8 engine vs PT2E engine: "
            f"{r['int8_engine_vs_pt2e_b1']:.2f}x (b1), {r['int8_engine_vs_pt2e_b64']:.2f}x (b64)"
        )
    print_summary(res)


if __name__ == "__main__":
    main()
