"""Accuracy as a contract: every shipped data set x LSTM/GRU/TCN x int8, int4, prune 50 % + int8,
on x86 (ONNX Runtime) and ARM (LiteRT), each built under the default error budget (MAE +1 % at
every step, observed test values) with the fallback ladder.

Per cell it records the rung that met the budget (or "refused": nothing written), the worst-step
MAE change on observed test values of what was written (of the plain build when refused), the
size against the fp32 artifact of the same model and target, the layers computing in float
(kept float, or weights stored quantized but expanded to float32 at load), batch-1 latency
through the runtime, and the gated build's wall time against its own plain compile (its stages
up to verify, where the gate starts: the ladder's cost).

``--size default`` trains the library's default hyperparameters (what ``edgecomp train`` gives:
LSTM / GRU hidden 64 x 2 layers, TCN default), ``--size small`` LSTM / GRU 32 x 1; checkpoints
are cached per size under benchmarks/out/accuracy_budget/ (``--train-only`` fills the cache).
Writes benchmarks/out/accuracy_budget.{json,md}; cells not run (--datasets, --archs, --variants,
--targets, --max-minutes) are listed as such; ``--render --merge`` combines partial runs.

    .venv/bin/python benchmarks/accuracy_budget.py [--datasets traffic,weather] [--targets x86]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
WORK = OUT / "accuracy_budget"
DATA = ROOT / "examples" / "data"
WEATHER_VARS = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "precip", "pressure", "visib")
STOCKS = ("AAPL", "AMZN", "IBM", "INTC", "JNJ", "JPM", "KO", "MSFT", "WMT", "XOM")
# per --size: "default" is what ``edgecomp train`` gives a user (the models' own defaults: LSTM /
# GRU hidden 64 x 2 layers, TCN default); "small" the 32 x 1 recurrent models of earlier runs
SIZES = {
    "default": {"lstm": {}, "gru": {}, "tcn": {}},
    "small": {"lstm": {"hidden": 32, "layers": 1}, "gru": {"hidden": 32, "layers": 1}, "tcn": {}},
}
TARGETS = {"x86": "x86-64-avx2", "arm": "rpi5-cortex-a76"}
VARIANTS = {
    "int8": ("int8", False),
    "int4": ("int4", False),
    "prune50+int8": ("int8", True),
}


def datasets() -> dict[str, tuple[Any, Any, dict[str, Any]]]:
    """Name -> (data file, DataConfig, training overrides)."""
    from edgecomp.data import DataConfig

    weather = tuple(f"{s}_{v}" for s in ("EWR", "JFK", "LGA") for v in WEATHER_VARS)
    out = {
        "traffic": (
            DATA / "odot_detector_counts_15min.parquet",
            DataConfig(input_len=48, horizon=8, id_col="detector", value_cols=("total",)),
            {},
        ),
        "weather": (
            DATA / "nyc_airports_weather_2013_hourly.csv.gz",
            DataConfig(
                input_len=48,
                horizon=24,
                id_col="origin",
                features=weather,
                targets=("EWR_temp", "JFK_temp", "LGA_temp"),
            ),
            {},
        ),
        "finance": (
            DATA / "sp500_10stocks_daily_returns.csv.gz",
            DataConfig(input_len=20, horizon=5, features=STOCKS),
            {"loss": "mae", "hparams": {"residual": False}},
        ),
    }
    bike = _bikeshare()
    if bike is not None:
        out["bikeshare"] = bike
    return out


def _bikeshare() -> tuple[Any, Any, dict[str, Any]] | None:
    """BIXI daily departures of the 100 busiest stations, as examples/bikeshare builds them."""
    folder = ROOT / "examples" / "bikeshare"
    if not (folder / "bixi.py").exists():
        return None
    from edgecomp.data import DataConfig

    sys.path.insert(0, str(folder))
    import bixi

    names = bixi.stations(0.05, 100)
    table = bixi.daily_table(WORK / "bixi_daily.csv", names)
    return table, DataConfig(14, 7, split=(0.6, 0.2, 0.2), targets=tuple(names)), {}


def checkpoint(
    name: str, arch: str, path: Path, config: Any, overrides: dict, epochs: int, size: str
):
    """The cached checkpoint of ``arch`` on ``name`` at ``size`` (trained on first use)."""
    from edgecomp.frontend import load_model
    from edgecomp.train import TrainConfig
    from edgecomp.workflow import train_checkpoint

    folder = ckpt_folder(name, arch, size)
    if not (folder / "spec.json").exists():
        hparams = {**SIZES[size][arch], **overrides.get("hparams", {})}
        train = TrainConfig(
            arch=arch,
            hparams=hparams,
            epochs=epochs,
            patience=3,
            lr=2e-3,
            loss=overrides.get("loss", "mse"),
        )
        train_checkpoint(path, config, train, folder)
    return load_model(folder)


def ckpt_folder(name: str, arch: str, size: str) -> Path:
    """Where the checkpoint of one size is cached (the small one where earlier runs left it)."""
    return WORK / ("ckpt" if size == "small" else f"ckpt-{size}") / name / arch


def pruned(model: Any, dataset: Any, epochs: int) -> tuple[Any, list[dict[str, Any]]]:
    """Prune 50 % (L2) and fine-tune on the training split, as a recipe would."""
    from edgecomp.passes import PassContext, run_passes
    from edgecomp.passes.recipe import parse_recipe

    recipe = parse_recipe(
        {
            "passes": [
                {"pass": "prune", "ratio": 0.5, "importance": "l2"},
                {"pass": "finetune", "epochs": epochs, "patience": 3, "lr": 2e-3},
            ],
            "lower": [],
        },
        source="accuracy_budget",
    )
    return run_passes(model, recipe.make_passes(), PassContext(dataset, eval_split="val"))


def cell(
    model,
    dataset,
    target: str,
    precision: str,
    passes,
    fp32: dict,
    folder: Path,
    options: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Build one cell under the default budget; what it measured. The plain compile's wall time
    is the gated build's own stages up to verify (where its gate starts), not a second compile."""
    from edgecomp import pipeline
    from edgecomp.budget import Budget, BudgetNotMet
    from edgecomp.ladder import build_within_budget
    from edgecomp.pipeline import BuildConfig

    config = BuildConfig(target=target, precision=precision, options=dict(options or {}))
    out = folder / f"{target}-{precision}.edgepkg"
    marks: dict[str, float] = {}
    hook = _gate_mark(marks)
    pipeline.STAGE_HOOKS.append(hook)
    start = time.perf_counter()
    try:
        result = build_within_budget(model, dataset, config, out, budget=Budget(), passes=passes)
    except BudgetNotMet as exc:
        trials = exc.trials
        plain = trials[0]["test"] if trials and trials[0].get("test") else None
        return {
            "met_by": "refused",
            "written": False,
            "message": str(exc),
            "worst_change_pct": None if plain is None else 100 * plain["worst_change"],
            "plain_s": round(marks.get("gate", start) - start, 2),
            "total_s": round(time.perf_counter() - start, 2),
            "rungs": [t["rung"] for t in trials],
        }
    finally:
        pipeline.STAGE_HOOKS.remove(hook)
    total_s = time.perf_counter() - start
    section, size = result.manifest["budget"], result.path.stat().st_size
    model_bytes, bare_bytes = model_file_size(result.path)
    return {
        "met_by": section["met_by"],
        "written": True,
        "worst_change_pct": 100 * section["gate"]["worst_change"],
        "worst_step": section["gate"]["worst_step"],
        "scored": result.manifest["metrics"]["artifact"].get("n_scored"),
        "imputed_left_out": result.manifest["metrics"]["artifact"].get("n_imputed"),
        "size_bytes": size,
        "size_vs_fp32_pct": 100 * size / fp32["artifact"],
        "model_file_bytes": model_bytes,
        "model_file_vs_fp32_pct": 100 * model_bytes / fp32["model_file"],
        "model_file_bare_bytes": bare_bytes,
        "model_file_bare_vs_fp32_pct": 100 * bare_bytes / fp32["model_file_bare"],
        "kept_float": _kept_float(result.manifest),
        "lowering": result.manifest["recipe"].get("lowering", {}).get("candidate_lowering"),
        "engine": result.manifest["recipe"].get("lowering", {}).get("engine"),
        "int8_layers": _int8_layers(result.manifest),
        "storage_only": _storage_only(result.manifest),
        "p50_b1_ms": latency(result.path, dataset),
        "plain_s": round(marks["gate"] - start, 2),
        "total_s": round(total_s, 2),
        "rungs": [t["rung"] for t in section["ladder"]],
    }


def _gate_mark(marks: dict[str, float]):
    """A stage hook noting when the (first) gate stage starts: the plain compile is done."""

    def hook(stage: str, _ctx: Any) -> None:
        if stage == "gate":
            marks.setdefault("gate", time.perf_counter())

    return hook


def _kept_float(manifest: dict[str, Any]) -> list[str]:
    """Compute layers the build left in float (the target's own rules or the mixed rung), on the
    engine the build chose (the x86 native engine: each record's ``native`` precision)."""
    key = "native" if _native(manifest) else "precision"
    return [
        layer["name"]
        for layer in manifest["layers"]
        if layer.get(key, layer["precision"]) == "fp32" and manifest["precision"] != "fp32"
    ]


def _native(manifest: dict[str, Any]) -> bool:
    return manifest["recipe"].get("lowering", {}).get("engine") == "native"


def _int8_layers(manifest: dict[str, Any]) -> list[str]:
    """Layers of an int4 build computing in int8 (the mixed rung's ``keep_int8``): quantized,
    not float, but not int4 either."""
    mixed = manifest["recipe"].get("mixed_precision") or {}
    if mixed.get("base_precision", manifest["precision"]) != "int4":  # a mixed plan: "mixed"
        return []
    return [layer["name"] for layer in manifest["layers"] if layer["precision"] == "int8"]


def _storage_only(manifest: dict[str, Any]) -> list[str]:
    """Layers whose weights are stored quantized but computed in float (``*-storage`` methods:
    expanded to float32 at load, e.g. ONNX Runtime's int8 GRU or int4 LSTM weights)."""
    native = _native(manifest)  # the native engine computes from its own file's weights
    return [
        layer["name"]
        for layer in manifest["layers"]
        if str(layer.get("method", "")).endswith("-storage") and not (native and "native" in layer)
    ]


def latency(path: Path, dataset: Any, calls: int = 300) -> float:
    """p50 ms of ``predict`` at batch 1 on real test windows, through the runtime."""
    import edgecomp_runtime

    model = edgecomp_runtime.load(path)
    windows = dataset.raw_inputs("test", imputed=True)[:64]
    for window in windows[:20]:
        model.predict(window)
    times = []
    for i in range(calls):
        start = time.perf_counter()
        model.predict(windows[i % len(windows)])
        times.append(time.perf_counter() - start)
    return round(1e3 * float(np.median(times)), 4)


def fp32_size(model, dataset, target: str, passes, folder: Path) -> dict[str, int]:
    """Bytes of the fp32 artifact (zip, manifest included) and of its model file."""
    from edgecomp.pipeline import BuildConfig, build

    out = folder / f"{target}-fp32.edgepkg"
    build(model, dataset, BuildConfig(target=target, precision="fp32"), out, passes=passes)
    model_file, bare = model_file_size(out)
    return {"artifact": out.stat().st_size, "model_file": model_file, "model_file_bare": bare}


def model_file_size(path: Path) -> tuple[int, int]:
    """Bytes of the artifact's model file (weights, scales and zero points, graph, provenance
    metadata), and without the provenance an ONNX file carries in ``metadata_props`` (the build
    id, spec and producer: the same few hundred bytes at every precision, also in the manifest).
    """
    import zipfile

    with zipfile.ZipFile(path) as archive:
        name = json.loads(archive.read("manifest.json"))["model_file"]
        data = archive.read(name)
    if not name.endswith(".onnx"):
        return len(data), len(data)
    import onnx

    proto = onnx.load_from_string(data)
    del proto.metadata_props[:]
    return len(data), len(proto.SerializeToString())


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every cell, target by target (x86 first: it is fast), until ``--max-minutes``."""
    import torch

    torch.set_num_threads(1)
    started, cells, skipped = time.perf_counter(), [], []
    all_data = datasets()
    models: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}
    fp32: dict[tuple[str, ...], dict[str, int]] = {}  # one fp32 build per model and target
    folder = WORK / "artifacts" / args.size
    folder.mkdir(parents=True, exist_ok=True)
    for tname in args.targets:
        for name in args.datasets:
            if name not in all_data:
                skipped.append({"dataset": name, "why": "data set not shipped"})
                continue
            for arch in args.archs:
                for variant in args.variants:
                    key = {"dataset": name, "arch": arch, "variant": variant, "target": tname}
                    key["size"] = args.size
                    if time.perf_counter() - started > 60 * args.max_minutes:
                        skipped.append({**key, "why": f"time limit ({args.max_minutes} min)"})
                        continue
                    model, dataset, passes = _model(models, all_data, name, arch, variant, args)
                    sizes = fp32.setdefault((name, arch, str(VARIANTS[variant][1]), tname), {})
                    measured = _measure_cell(
                        model, dataset, TARGETS[tname], variant, passes, sizes, folder, args.option
                    )
                    row = {**key, **_described(model), **measured}
                    if args.option:
                        row["options"] = args.option
                    print(json.dumps(row), flush=True)
                    cells.append(row)
    return {
        "budget": "MAE +1 % at every horizon step, observed test values (edgecomp.budget)",
        "epochs": args.epochs,
        "size": args.size,
        "hparams": SIZES[args.size],
        "cells": cells,
        "not_run": skipped,
        "summary": summarize(cells),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _model(models: dict, all_data: dict, name: str, arch: str, variant: str, args) -> tuple:
    """(model, dataset, pass records) of a cell, trained / pruned once per run."""
    from edgecomp.workflow import dataset_for

    prune = VARIANTS[variant][1]
    key = (name, arch, "pruned" if prune else "base")
    if key not in models:
        path, config, overrides = all_data[name]
        base = checkpoint(name, arch, path, config, overrides, args.epochs, args.size)
        dataset = dataset_for(base.spec, path)
        model, passes = pruned(base, dataset, args.epochs) if prune else (base, None)
        models[key] = (model, dataset, passes)
    return models[key]


def _described(model: Any) -> dict[str, Any]:
    """The model's hyperparameters and parameter count."""
    params = sum(p.numel() for p in model.module.parameters())
    return {"hparams": dict(model.spec.hparams), "params": int(params)}


def _measure_cell(
    model,
    dataset,
    target: str,
    variant: str,
    passes,
    fp32: dict[str, int],
    folder: Path,
    options: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One cell; ``fp32`` caches the float artifact's sizes of this model and target."""
    try:
        if not fp32:
            fp32.update(fp32_size(model, dataset, target, passes, folder))
        row = cell(model, dataset, target, VARIANTS[variant][0], passes, fp32, folder, options)
        return {"fp32_model_file_bytes": fp32["model_file"], **row}
    except ValueError as exc:  # a target that cannot build the cell says why
        return {"met_by": "error", "written": False, "message": str(exc).splitlines()[0]}


def summarize(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's figures over every target's cells together, then per target."""
    out = _summary(cells)
    targets = sorted({c["target"] for c in cells})
    if len(targets) > 1:
        out["by_target"] = {t: _summary([c for c in cells if c["target"] == t]) for t in targets}
    return out


def _summary(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Written above budget, int8 / int4 without float layers, int4 sizes, ladder cost."""
    written = [c for c in cells if c.get("written")]
    out: dict[str, Any] = {
        "cells": len(cells),
        "written": len(written),
        "refused": sum(c["met_by"] == "refused" for c in cells),
        "errors": sum(c["met_by"] == "error" for c in cells),
        "written_above_budget": sum(c["worst_change_pct"] > 1.0 + 1e-6 for c in written),
    }
    for variant in ("int8", "int4"):
        mine = [c for c in cells if c["variant"] == variant and c["met_by"] != "error"]
        # met the budget with every compute layer quantized: no float layer, neither the
        # target's own rule (e.g. ONNX Runtime's GRU: int8-stored weights, float compute) nor
        # the mixed rung's
        quantized = [c for c in mine if c.get("written") and not c.get("kept_float")]
        out[f"{variant}_met_all_layers_quantized"] = f"{len(quantized)}/{len(mine)}"
        # of those, every layer also computes at that precision (no "*-storage" layer whose
        # weights are expanded to float32 at load)
        compute = [c for c in quantized if not c.get("storage_only")]
        out[f"{variant}_met_all_layers_quantized_compute"] = f"{len(compute)}/{len(mine)}"
    int4 = [c for c in cells if c["variant"] == "int4" and c["met_by"] != "error"]
    for key, field in (("model_file", "model_file_vs_fp32_pct"), ("without_provenance", None)):
        small = [
            c
            for c in int4
            if c.get("written")
            and not c.get("kept_float")
            and c.get(field or "model_file_bare_vs_fp32_pct", c.get("model_file_vs_fp32_pct")) <= 20
        ]
        out[f"int4_met_all_quantized_at_most_20pct_{key}"] = f"{len(small)}/{len(int4)}"
        # of those, how many keep some layers in int8 (mixed int4/int8: no float layer)
        mixed8 = sum(bool(c.get("int8_layers")) for c in small)
        out[f"int4_met_all_quantized_at_most_20pct_{key}_with_int8_layers"] = mixed8
    not_needed = [c for c in written if c["met_by"] == "plain" and c["plain_s"] > 0]
    ratios = sorted(c["total_s"] / c["plain_s"] for c in not_needed)
    out["ladder_not_needed_time_ratio_max"] = round(ratios[-1], 2) if ratios else None
    out["ladder_not_needed_time_ratio_median"] = (
        round(ratios[len(ratios) // 2], 2) if ratios else None
    )
    return out


def markdown(result: dict[str, Any]) -> str:
    """The matrix: one row per data set x model x variant, one column group per target."""
    targets = sorted({c["target"] for c in result["cells"]})
    head = ["data set", "model (params)", "variant"]
    for t in targets:
        head += [f"{t} worst step", f"{t} met by", f"{t} model file / fp32 (w/o provenance)"]
        head += [f"{t} float compute", f"{t} p50 b1 ms", f"{t} build s (plain)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows: dict[tuple, dict[str, dict]] = {}
    for c in result["cells"]:
        key = (c["dataset"], _model_text(c), c["variant"])
        rows.setdefault(key, {})[c["target"]] = c
    for (dataset, model, variant), by_target in rows.items():
        cells = [dataset, model, variant]
        for t in targets:
            cells += _md_cells(by_target.get(t))
        lines.append("| " + " | ".join(cells) + " |")
    summary = {k: v for k, v in result["summary"].items() if k != "by_target"}
    lines += ["", "Summary (all targets): " + ", ".join(f"{k} {v}" for k, v in summary.items())]
    for t, figures in result["summary"].get("by_target", {}).items():
        lines.append(f"Summary ({t}): " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    lines.append(
        "float compute: layers computing in float32; * = weights stored quantized (int8/int4) "
        "but expanded to float32 at load (weight-only storage, not integer compute)."
    )
    if result["not_run"]:
        lines.append(f"Not run: {len(result['not_run'])} cells ({result['not_run'][0]['why']}).")
    return "\n".join(lines) + "\n"


def _model_text(c: dict[str, Any]) -> str:
    """``lstm 64x2 (67.2k)``: architecture, recurrent size and parameter count, when recorded."""
    hp, text = c.get("hparams") or {}, c["arch"]
    if "hidden" in hp:
        text += f" {hp['hidden']}x{hp.get('layers', 1)}"
    if c.get("params"):
        text += f" ({c['params'] / 1000:.1f}k)"
    return text


def _md_cells(c: dict[str, Any] | None) -> list[str]:
    if c is None:
        return ["not run"] * 6
    if c["met_by"] == "error":
        return ["error", "-", "-", "-", "-", "-"]
    change = c.get("worst_change_pct")
    change_text = "-" if change is None else f"{change:+.2f} %"
    seconds = f"{c['total_s']:.1f} ({c['plain_s']:.1f})"
    if not c["written"]:
        return [change_text + " (plain)", "refused", "-", "-", "-", seconds]
    bare = c.get("model_file_bare_vs_fp32_pct", c["model_file_vs_fp32_pct"])
    size = f"{c['model_file_vs_fp32_pct']:.1f} % / {bare:.1f} % ({c['size_vs_fp32_pct']:.0f} % zip)"
    storage = set(c.get("storage_only") or ())
    floats = [*c.get("kept_float", []), *(n for n in storage if n not in c.get("kept_float", []))]
    floated = ", ".join(n + ("*" if n in storage else "") for n in floats) or "none"
    if len(floats) > 3:  # a long list: how many, how many of them stored quantized
        stored = sum(n in storage for n in floats)
        floated = f"{len(floats)} layers" + ("*" if stored == len(floats) else f" ({stored}*)")
    return [change_text, _met_by_text(c), size, floated, f"{c['p50_b1_ms']:.3f}", seconds]


def _met_by_text(c: dict[str, Any]) -> str:
    """The rung, and for an int4 cell with int8 layers how many (``mixed int4/int8, 2 layers
    int8``): quantized throughout, but not all of it int4."""
    int8 = c.get("int8_layers") or []
    if not int8:
        return c["met_by"]
    layers = f"{len(int8)} layer{'s' if len(int8) > 1 else ''} int8"
    if c.get("kept_float"):
        return f"{c['met_by']} int4/int8/float, {layers}"
    return f"{c['met_by']} int4/int8, {layers}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="traffic,weather,bikeshare,finance")
    parser.add_argument("--archs", default="lstm,gru,tcn")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--targets", default="x86,arm")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument(
        "--size",
        choices=tuple(SIZES),
        default="default",
        help="Model size: default = the library's hyperparameters (edgecomp train's), "
        "small = LSTM/GRU hidden 32 x 1 layer (checkpoints cached per size).",
    )
    parser.add_argument(
        "--train-only", action="store_true", help="Train (cache) the checkpoints and stop."
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="A build option for every quantized cell (as edgecomp build --option), e.g. "
        "lowering=scan; recorded in each cell. The fp32 reference is built without it.",
    )
    parser.add_argument("--max-minutes", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=OUT / "accuracy_budget.json")
    parser.add_argument(
        "--render", action="store_true", help="Re-summarize and re-render --out's JSON only."
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="*",
        default=[],
        help="With --render: also take the cells of these JSON files (a later file's cell "
        "replaces an earlier one of the same data set, model, variant and target).",
    )
    args = parser.parse_args()
    if args.render:
        _write(args.out, merged([args.out, *args.merge] if args.out.exists() else args.merge))
        return
    for key in ("datasets", "archs", "variants", "targets"):
        setattr(args, key, [v for v in getattr(args, key).split(",") if v])
    args.option = _options(args.option)
    WORK.mkdir(parents=True, exist_ok=True)
    if args.train_only:
        train_all(args)
        return
    _write(args.out, run(args))


def _options(items: list[str]) -> dict[str, str]:
    """``["lowering=scan"]`` -> ``{"lowering": "scan"}``; a malformed entry exits naming it."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--option {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def train_all(args: argparse.Namespace) -> None:
    """Train (or find cached) every checkpoint of ``--size``, printing each one's seconds."""
    import torch

    torch.set_num_threads(1)
    all_data, total = datasets(), time.perf_counter()
    for name in args.datasets:
        path, config, overrides = all_data[name]
        for arch in args.archs:
            cached = (ckpt_folder(name, arch, args.size) / "spec.json").exists()
            start = time.perf_counter()
            model = checkpoint(name, arch, path, config, overrides, args.epochs, args.size)
            params = sum(p.numel() for p in model.module.parameters())
            seconds = round(time.perf_counter() - start, 1)
            row = {"dataset": name, "arch": arch, "size": args.size, "params": params}
            print(json.dumps({**row, "cached": cached, "seconds": seconds}), flush=True)
    print(f"all checkpoints in {time.perf_counter() - total:.0f} s", flush=True)


def merged(paths: list[Path]) -> dict[str, Any]:
    """One result from runs of separate targets or cells (``--targets arm`` after x86)."""
    result: dict[str, Any] = {"cells": [], "not_run": [], "runs": []}
    cells: dict[tuple, dict[str, Any]] = {}
    for path in paths:
        try:
            run_ = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"--merge {path}: not a readable result ({exc})") from None
        for c in run_["cells"]:
            key = (c["dataset"], c["arch"], c["variant"], c["target"], c.get("size", "small"))
            cells[key] = c
        result["runs"].append(
            {"file": str(path), "epochs": run_.get("epochs"), "size": run_.get("size", "small")}
        )
        result.update({k: run_[k] for k in ("budget", "epochs", "size", "hparams") if k in run_})
    done = set(cells)
    result["cells"] = list(cells.values())
    for path in paths:
        for skip in json.loads(path.read_text()).get("not_run", []):
            key = tuple(skip.get(k) for k in ("dataset", "arch", "variant", "target"))
            if (*key, skip.get("size", "small")) not in done and skip not in result["not_run"]:
                result["not_run"].append(skip)
    result["summary"] = summarize(result["cells"])
    return result


def _write(out: Path, result: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
