"""Model passes on the traffic data: structured pruning + fine-tuning + int8, and distillation.

Pruning: each model (default the LSTM) goes through the recipe prune 50 % -> fine-tune, then both
the original and the pruned model are built for x86 (fp32 and int8) and timed side by side in one
run through ``edgecomp_runtime`` (``predict`` on raw windows, interleaved rounds, one thread).
Distillation: the LSTM teaches a smaller student, reported per horizon step against the teacher
and against the same student trained without a teacher. Prints, writes JSON and a figure.

    python benchmarks/passes_traffic.py [--checkpoints examples/traffic/out/checkpoints] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

import edgecomp_runtime
from edgecomp.bench.host import host_info
from edgecomp.bench.runner import latency_stats, measure
from edgecomp.checkpoint import load_checkpoint
from edgecomp.data import DataConfig
from edgecomp.passes import PassContext, count_params, make_pass, run_passes
from edgecomp.pipeline import BuildConfig, build
from edgecomp.train import TrainConfig
from edgecomp.workflow import dataset_for, train_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "odot_detector_counts_15min.parquet"
DATA_CONFIG = DataConfig(input_len=48, horizon=8, id_col="detector", value_cols=("total",))
TRAIN = TrainConfig(epochs=40, patience=6, lr=2e-3)
AIMS = {"size_fraction": 1 / 8, "speedup_b64": 1.8, "prune_mae_pct": 3.0, "distill_mae_pct": 5.0}
AIMS["distill_param_fraction"] = 1 / 4


def main() -> None:
    args = _args()
    torch.set_num_threads(1)
    results = {"host": host_info(threads=1), "data": DATA.name, "aims": AIMS, "prune": {}}
    with tempfile.TemporaryDirectory() as tmp:
        models = {arch: _checkpoint(arch, args, Path(tmp)) for arch in args.archs.split(",")}
        dataset = dataset_for(next(iter(models.values())).spec, DATA)
        for arch, model in models.items():
            results["prune"][arch] = prune_and_compare(model, dataset, Path(tmp) / arch, args)
            _print_prune(arch, results["prune"][arch])
        teacher = models.get("lstm") or _checkpoint("lstm", args, Path(tmp))
        results["distill"] = distill(teacher, dataset, args)
        _print_distill(results["distill"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    figure(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out.with_suffix('.png')}")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, help="folder with lstm/, gru/, tcn/")
    parser.add_argument("--archs", default="lstm", help="models to prune, comma-separated")
    parser.add_argument("--ratio", type=float, default=0.5, help="fraction of units removed")
    parser.add_argument("--importance", default="taylor", choices=["l1", "l2", "taylor"])
    parser.add_argument(
        "--finetune",
        default='{"epochs": 40, "patience": 8, "lr": 0.002, "alpha": 0.5}',
        help="fine-tune pass options (JSON); alpha < 1 also distils from the unpruned model",
    )
    parser.add_argument(
        "--student", default='{"student": "gru", "hparams": {"hidden": 32, "layers": 1}}'
    )
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds")
    parser.add_argument("--iters", type=int, default=30, help="timed calls per variant per round")
    parser.add_argument("--quick", action="store_true", help="2 epochs everywhere (smoke run)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/passes_traffic.json")
    return parser.parse_args()


def _checkpoint(arch: str, args: argparse.Namespace, tmp: Path):
    if args.checkpoints and (args.checkpoints / arch / "spec.json").exists():
        return load_checkpoint(args.checkpoints / arch)
    epochs = {"epochs": 2} if args.quick else {}
    config = TrainConfig(**{**TRAIN.to_dict(), "arch": arch, **epochs})
    return train_checkpoint(DATA, DATA_CONFIG, config, tmp / f"ckpt-{arch}").model


def prune_and_compare(model, dataset, work: Path, args: argparse.Namespace) -> dict:
    """Prune + fine-tune, build fp32 and int8 of both models, time and compare them."""
    finetune = {**json.loads(args.finetune), **({"epochs": 2} if args.quick else {})}
    passes = [
        make_pass("prune", {"ratio": args.ratio, "importance": args.importance}),
        make_pass("finetune", finetune),
    ]
    pruned, records = run_passes(model, passes, PassContext(dataset))
    work.mkdir(parents=True)
    artifacts = {}
    for name, m, recs in (("original", model, []), ("pruned", pruned, records)):
        for precision in ("fp32", "int8"):
            config = BuildConfig(precision=precision)
            result = build(m, dataset, config, work / f"{name}-{precision}.edgepkg", passes=recs)
            artifacts[f"{name}_{precision}"] = result
    latency = _interleaved(artifacts, dataset, args)
    return _prune_summary(model, pruned, records, artifacts, latency)


def _interleaved(artifacts: dict, dataset, args: argparse.Namespace) -> dict:
    """p50 latency of ``predict`` per artifact and batch size, rounds in random order."""
    raw = dataset.raw_inputs("test", imputed=True)
    models = {name: edgecomp_runtime.load(r.path, threads=1) for name, r in artifacts.items()}
    times = {b: {name: [] for name in models} for b in (1, 64)}
    rng = np.random.default_rng(0)
    for _ in range(args.rounds):
        for b in (1, 64):
            start = int(rng.integers(0, len(raw) - b))
            batch = raw[start] if b == 1 else raw[start : start + b]
            for name in rng.permutation(list(models)):
                call = models[name].predict
                ms = measure(
                    lambda c=call, x=batch: c(x), warmup=2, min_iters=args.iters, min_seconds=0
                )
                times[b][name].append(ms)
    return {
        f"b{b}": {name: latency_stats(np.concatenate(v))["p50_ms"] for name, v in per.items()}
        for b, per in times.items()
    }


def _model_bytes(result) -> int:
    manifest = result.manifest
    return next(f["size"] for f in manifest["files"] if f["name"] == manifest["model_file"])


def _prune_summary(model, pruned, records, artifacts, latency) -> dict:
    sizes = {name: _model_bytes(r) for name, r in artifacts.items()}
    mae = {name: r.manifest["metrics"]["artifact"]["mae"] for name, r in artifacts.items()}
    base = mae["original_fp32"]
    delta = [(p / b - 1) * 100 for p, b in zip(mae["pruned_int8"], base, strict=True)]
    checks = {
        "size_fraction": sizes["pruned_int8"] / sizes["original_fp32"],
        "speedup_b64": latency["b64"]["original_int8"] / latency["b64"]["pruned_int8"],
        "speedup_b1": latency["b1"]["original_int8"] / latency["b1"]["pruned_int8"],
        "prune_mae_pct_worst": max(delta),
    }
    met = {
        "size": checks["size_fraction"] <= AIMS["size_fraction"],
        "speed": checks["speedup_b64"] >= AIMS["speedup_b64"],
        "mae": checks["prune_mae_pct_worst"] <= AIMS["prune_mae_pct"],
    }
    return {
        "params": {"original": count_params(model.module), "pruned": count_params(pruned.module)},
        "hparams": {"original": model.spec.hparams, "pruned": pruned.spec.hparams},
        "passes": records,
        "model_file_bytes": sizes,
        "artifact_bytes": {name: r.path.stat().st_size for name, r in artifacts.items()},
        "latency_p50_ms": latency,
        "mae": mae,
        "pruned_int8_vs_original_fp32_pct": delta,
        "checks": checks,
        "met": met,
    }


def distill(teacher, dataset, args: argparse.Namespace) -> dict:
    """Distil ``teacher`` into the student of ``args.student``; compare with scratch."""
    options = {**json.loads(args.student), "alpha": args.alpha}
    if args.quick:
        options["epochs"] = 2
    _, [record] = run_passes(teacher, [make_pass("distill", options)], PassContext(dataset))
    stats = record["measured"]["stats"]
    worst = max(stats["student_vs_teacher_pct"])
    return {
        "config": record["_data"],
        **stats,
        "met": {
            "params": stats["param_ratio"] <= AIMS["distill_param_fraction"],
            "mae": worst <= AIMS["distill_mae_pct"],
        },
        "student_vs_teacher_pct_worst": worst,
    }


def _fmt(values) -> str:
    return " ".join(f"{v:6.3f}" for v in values)


def _print_prune(arch: str, res: dict) -> None:
    print(f"\n{arch}: params {res['params']['original']:,} -> {res['params']['pruned']:,}")
    for name, size in res["model_file_bytes"].items():
        lat = res["latency_p50_ms"]
        print(
            f"  {name:15s} model {size:8,d} B  p50 b1 {lat['b1'][name]:.3f} ms  "
            f"b64 {lat['b64'][name]:.3f} ms  MAE/h {_fmt(res['mae'][name])}"
        )
    c = res["checks"]
    print(
        f"  pruned int8 / fp32 file {c['size_fraction']:.3f} (aim <= {AIMS['size_fraction']:.3f}); "
        f"speed-up vs int8 b64 {c['speedup_b64']:.2f}x (aim >= {AIMS['speedup_b64']}), "
        f"b1 {c['speedup_b1']:.2f}x; MAE vs fp32 worst step {c['prune_mae_pct_worst']:+.2f} % "
        f"(aim <= +{AIMS['prune_mae_pct']} %); met: {res['met']}"
    )


def _print_distill(res: dict) -> None:
    t, s = res["teacher"], res["student"]
    print(
        f"\ndistill {t['arch']} ({t['params']:,} params) -> {s['arch']} {res['config']['hparams']} "
        f"({s['params']:,} params, {res['param_ratio']:.3f} of the teacher)"
    )
    for row in ("teacher", "student", "scratch"):
        if row in res:
            print(f"  {row:8s} MAE/h {_fmt(res[row]['mae'])}  mean {np.mean(res[row]['mae']):.4f}")
    print(
        f"  student vs teacher worst step {res['student_vs_teacher_pct_worst']:+.2f} % "
        f"(aim <= +{AIMS['distill_mae_pct']} %); gap to teacher {res['teacher_gap']}; "
        f"met: {res['met']}"
    )


def figure(results: dict, path: Path) -> None:
    """Per-horizon MAE: pruned against original (left), distillation (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, (arch, res) in enumerate(results["prune"].items()):
        for name, style in (("original_fp32", "-"), ("pruned_int8", "--")):
            mae = res["mae"][name]
            label = f"{arch} {name.replace('_', ' ')}"
            axes[0].plot(range(1, len(mae) + 1), mae, style, color=f"C{i}", marker="o", label=label)
    axes[0].set(title="Pruned + fine-tuned, int8", xlabel="horizon step", ylabel="test MAE")
    d = results["distill"]
    for row in ("teacher", "student", "scratch"):
        if row in d:
            label = f"{row}: {d[row]['arch']} ({d[row]['params']:,} params)"
            axes[1].plot(range(1, len(d[row]["mae"]) + 1), d[row]["mae"], marker="o", label=label)
    axes[1].set(title="Distillation", xlabel="horizon step", ylabel="test MAE")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
