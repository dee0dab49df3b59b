"""edgecomp tune (TPE) against plain grid search and neural-compressor 3.x autotune, same budget.

On the traffic LSTM and TCN (examples/traffic/out/checkpoints, from `make demo`), each search gets
the same trial budget and the same accuracy goal: at most +1 % validation MAE at every horizon
step against the fp32 model. Reported per search: what it chose (the fastest recipe meeting the
goal, by median latency at batch 1 for edgecomp), trials run and needed, wall time; then the chosen
models are timed again side by side in one interleaved loop (p50 and p99; ratios against PyTorch
eager fp32), with their test MAE per step.

neural-compressor is a peer here, not a dependency: install it with
`pip install -c constraints.txt neural-compressor-pt==3.10` (its 3.x PyTorch path quantizes a
torch.export graph with PT2E; it stops at the first config that meets the goal and does not
look at latency). Without it, that column is skipped with the reason.

    .venv/bin/python benchmarks/tune_compare.py [--trials 10] [--archs lstm,tcn]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from edgecomp.bench.runner import latency_stats
from edgecomp.metrics import horizon_metrics
from edgecomp.tune import Constraints, TuneConfig, tune
from edgecomp.workflow import ingest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples/data/odot_detector_counts_15min.parquet"
CKPT = ROOT / "examples/traffic/out/checkpoints"
OUT = ROOT / "benchmarks/out/tune_compare"
BUDGET = 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--archs", default="lstm,tcn")
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    for arch in args.archs.split(","):
        if not (CKPT / arch).exists():
            raise SystemExit(f"{CKPT / arch} is missing: run `make demo` first")
        results[arch] = compare(arch, args)
        print(json.dumps(results[arch]["summary"], indent=2))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "tune_compare.json").write_text(json.dumps(results, indent=2, default=float))
    print(f"wrote {OUT / 'tune_compare.json'}")


def compare(arch: str, args: argparse.Namespace) -> dict:
    model, dataset = ingest(str(CKPT / arch), DATA)
    searches = {
        "edgecomp-tpe": _edgecomp(model, dataset, "tpe", arch, args),
        "grid": _edgecomp(model, dataset, "grid", arch, args),
        "inc-autotune": _inc(model, dataset, args.trials),
    }
    runners = {"torch-fp32": _torch_runner(model.module, dataset)}
    for name, found in searches.items():
        if found.get("runner") is not None:
            runners[name] = found.pop("runner")
    timing = _interleaved(runners, dataset, args.rounds)
    base = timing["torch-fp32"]["p50_ms"]
    for name, found in searches.items():
        if name in timing:
            found["p50_ms_side_by_side"] = timing[name]["p50_ms"]
            found["p99_ms_side_by_side"] = timing[name]["p99_ms"]
            found["speedup_vs_torch_fp32"] = base / timing[name]["p50_ms"]
    return {"searches": searches, "timing": timing, "summary": _summary(searches)}


def _edgecomp(model, dataset, strategy: str, arch: str, args) -> dict:
    import edgecomp_runtime

    out = OUT / arch / strategy
    config = TuneConfig(
        strategy=strategy,
        trials=args.trials,
        finetune_epochs=args.finetune_epochs,
        storage=f"sqlite:///{out}.db",
        study_name=f"{arch}-{strategy}-{int(time.time())}",
    )
    began = time.perf_counter()
    result = tune(
        model, dataset, config, Constraints(max_error_increase=BUDGET), out, students=False
    )
    wall = time.perf_counter() - began
    found = {"wall_s": wall, "trials_run": sum(len(r["trials"]) for r in result.rows)}
    if result.chosen is None:
        return {**found, "met_goal": False, "reason": result.error}
    loaded = edgecomp_runtime.load(result.artifact)
    test = loaded.manifest["metrics"]["artifact"]["mae"]
    ref = loaded.manifest["metrics"]["reference"]["mae"]
    return {
        **found,
        "met_goal": True,
        "recipe": result.chosen["summary"],
        "trials_needed": min(result.chosen["trials"]) + 1,
        "val_error_increase": result.chosen["measured"]["error_increase"],
        "test_mae": test,
        "test_reference_mae": ref,
        "size_bytes": result.artifact.stat().st_size,
        "runner": lambda raw, m=loaded: m.predict(raw),
    }


def _inc(model, dataset, trials: int) -> dict:
    try:
        from neural_compressor.torch.export import export
        from neural_compressor.torch.quantization import (
            DynamicQuantConfig,
            StaticQuantConfig,
            TuningConfig,
            autotune,
        )
    except ImportError as exc:
        return {"met_goal": None, "reason": f"neural-compressor is not installed ({exc})"}
    val = dataset.split("val")
    x = torch.from_numpy(val.x)
    reference = _per_step_mae(model.module, x, dataset, "val")
    count = {"evals": 0}

    def eval_fn(q) -> float:  # higher is better: 1 / worst per-step MAE ratio to fp32
        count["evals"] += 1
        ratio = max(_per_step_mae(q, x, dataset, "val") / reference)
        return float(1.0 / ratio)

    config_set = [
        StaticQuantConfig(),
        DynamicQuantConfig(w_granularity=["per_tensor", "per_channel"], act_algo=["kl", "minmax"]),
    ]
    dims = ({0: torch.export.Dim.AUTO},)
    exported = export(
        copy.deepcopy(model.module).eval(), example_inputs=(x[:2],), dynamic_shapes=dims
    )
    began = time.perf_counter()
    q = autotune(
        exported,
        TuningConfig(config_set=config_set, tolerable_loss=BUDGET, max_trials=trials),
        eval_fn=eval_fn,
        run_fn=lambda m: m(x[:256]),
        example_inputs=(x[:2],),
    )
    wall = time.perf_counter() - began
    worst = 1.0 / eval_fn(q) - 1
    test = _per_step_mae(q, torch.from_numpy(dataset.test.x), dataset, "test")
    return {
        "wall_s": wall,
        "trials_run": count["evals"] - 2,  # minus the fp32 baseline and the final check
        "met_goal": bool(worst <= BUDGET + 1e-9),
        "val_error_increase": worst,
        "test_mae": test.tolist(),
        "runner": lambda raw, m=q: _torch_predict(m, raw, dataset),
    }


def _per_step_mae(module, x: torch.Tensor, dataset, split: str) -> np.ndarray:
    with torch.no_grad():
        pred = np.concatenate([module(x[i : i + 512]).numpy() for i in range(0, len(x), 512)])
    return np.asarray(
        horizon_metrics(dataset.raw_targets(split), dataset.unscale_targets(pred))["mae"]
    )


def _torch_runner(module, dataset):
    return lambda raw: _torch_predict(module, raw, dataset)


def _torch_predict(module, raw: np.ndarray, dataset) -> np.ndarray:
    """Raw window in, raw forecast out: the same job the runtime's predict does."""
    scaled = (raw - dataset.mean) / dataset.std
    with torch.no_grad():
        out = module(torch.from_numpy(scaled[None].astype(np.float32))).numpy()
    return dataset.unscale_targets(out)


def _interleaved(runners: dict, dataset, rounds: int) -> dict:
    raw = dataset.raw_inputs("test", imputed=True)[:64]
    times = {name: [] for name in runners}
    for fn in runners.values():  # warm up
        for w in raw[:20]:
            fn(w)
    for _ in range(rounds):
        for name, fn in runners.items():
            for w in raw:
                start = time.perf_counter_ns()
                fn(w)
                times[name].append((time.perf_counter_ns() - start) / 1e6)
    return {name: latency_stats(np.asarray(t)) for name, t in times.items()}


def _summary(searches: dict) -> dict:
    keys = ("met_goal", "recipe", "trials_run", "trials_needed", "wall_s", "p50_ms_side_by_side")
    keys += ("p99_ms_side_by_side",)
    keys += ("speedup_vs_torch_fp32", "val_error_increase", "reason")
    return {n: {k: s.get(k) for k in keys if s.get(k) is not None} for n, s in searches.items()}


if __name__ == "__main__":
    main()
