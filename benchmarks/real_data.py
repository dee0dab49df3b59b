"""Real-world data (issue 17): every command on data nobody tuned for, calendar inputs, count clamp.

Three parts, each printed and written to benchmarks/out/real_data.json:

* ``commands``: ``edgecomp data, train, build, bench, analyze, report`` (and ``tune`` on the
  bike-share file: its trials take minutes each here) on each file with no
  hand-editing (the bike-share file whose stations start late, the shipped traffic, weather and
  finance files); the exit code and the first error line of each, and the training warnings
  (every step at which the model loses to a baseline).
* ``calendar``: traffic and weather, TCN and GRU, trained with and without calendar features
  (hour of day and day of week as lead channels); mean MAE on validation (the choice) and test.
* ``clamp``: the same models scored with and without the non-negative output floor: how many
  forecasts were below zero and the MAE change.

    .venv/bin/python benchmarks/real_data.py [--epochs 12] [--part commands|calendar|all]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner

from edgecomp.cli import main as edgecomp_cli
from edgecomp.data import DataConfig, prepare
from edgecomp.frontend import reference_predict
from edgecomp.train import TrainConfig
from edgecomp.workflow import evaluate, train_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data"
WEATHER_VARS = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "precip", "pressure", "visib")

# name -> (file, data flags for the CLI, -L, -H)
FILES = {
    "bikeshare-late-start": (ROOT / "tests/data/bixi_late_start.csv", "", 14, 7),
    "traffic": (DATA / "odot_detector_counts_15min.parquet", "--id-col detector", 48, 8),
    "weather": (
        DATA / "nyc_airports_weather_2013_hourly.csv.gz",
        "--id-col origin --drop-sparse 0.5 --targets EWR_temp,JFK_temp,LGA_temp",
        24,
        6,
    ),
    "finance": (DATA / "sp500_10stocks_daily_returns.csv.gz", "", 20, 5),
}

CALENDAR_RUNS = {
    "traffic": DataConfig(input_len=48, horizon=8, id_col="detector", value_cols=("total",)),
    "weather": DataConfig(
        input_len=24,
        horizon=6,
        id_col="origin",
        features=tuple(f"{s}_{v}" for s in ("EWR", "JFK", "LGA") for v in WEATHER_VARS),
        targets=("EWR_temp", "JFK_temp", "LGA_temp"),
    ),
}
ARCHS = {"tcn": {}, "gru": {"hidden": 32, "layers": 1}}
TUNE_FILES = ("bikeshare-late-start",)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--part", choices=["commands", "calendar", "all"], default="all")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/real_data.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}  # parts run apart
    result[f"epochs_{args.part}"] = args.epochs
    with tempfile.TemporaryDirectory(prefix="edgecomp-real-") as tmp:
        if args.part in ("commands", "all"):
            result["commands"] = {n: _commands(n, Path(tmp) / n, args.epochs) for n in FILES}
        if args.part in ("calendar", "all"):
            result["calendar"] = _calendar(Path(tmp), args.epochs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


def _run(argv: str) -> dict:
    began = time.perf_counter()
    res = CliRunner().invoke(edgecomp_cli, shlex.split(argv))
    lines = res.output.strip().splitlines()
    error = next((ln for ln in lines if ln.startswith(("error", "Error"))), None)
    if res.exit_code and error is None:
        error = repr(res.exception) if res.exception else (lines[-1] if lines else "")
    return {"exit": res.exit_code, "error": error, "seconds": round(time.perf_counter() - began, 1)}


def _commands(name: str, tmp: Path, epochs: int) -> dict:
    path, flags, length, horizon = FILES[name]
    ckpt, art = tmp / "ckpt", tmp / "tcn.edgepkg"
    runs = {
        "data": f"data {path} {flags} -L {length} -H {horizon}",
        "train": f"train {path} {flags} -L {length} -H {horizon} --arch tcn --epochs {epochs} "
        f"--out-dir {ckpt}",
        "build": f"build {ckpt} --data {path} --precision int8 -o {art}",
        "bench": f"bench {art} --data {path} --min-iters 20 --min-seconds 0 --no-memory "
        f"--out-dir {tmp / 'bench'}",
        "analyze": f"analyze {ckpt} --data {path} -p int8 --calibration-windows 64 "
        f"--out-dir {tmp / 'analysis'}",
        "report": f"report {art} --data {path} --min-iters 20 --min-seconds 0 --no-memory "
        f"--out-dir {tmp / 'report'}",
    }
    if name in TUNE_FILES:  # tune measures latency per trial: minutes on a loaded 2-core host
        runs["tune"] = f"tune {ckpt} --data {path} --sampler random --trials 2 --no-build "
        runs["tune"] += f"--out-dir {tmp / 'tune'}"
    out = {}
    for command, argv in runs.items():
        out[command] = _run(argv)
        status = "ok" if out[command]["exit"] == 0 else f"exit {out[command]['exit']}"
        print(f"{name:22s} {command:8s} {status:8s} {out[command]['error'] or ''}", flush=True)
    evaluation = ckpt / "eval.json"
    if evaluation.is_file():
        ev = json.loads(evaluation.read_text())
        out["warnings"] = ev.get("warnings", [])
        out["left_out_test_windows"] = ev.get("left_out", 0)
        for warning in out["warnings"]:
            print(f"{'':22s} warning: {warning}")
    return out


def _calendar(tmp: Path, epochs: int) -> dict:
    out = {}
    for name, config in CALENDAR_RUNS.items():
        path = FILES[name][0]
        for arch, hparams in ARCHS.items():
            train = TrainConfig(arch=arch, hparams=hparams, epochs=epochs, patience=4, lr=2e-3)
            rows = {}
            for label, calendar in (("without", None), ("with", ("hour", "dow"))):
                data = dataclasses.replace(config, calendar=calendar)
                outcome = train_checkpoint(path, data, train, tmp / f"{name}-{arch}-{label}")
                dataset = prepare(path, data)
                rows[label] = _scores(outcome.model, dataset) | {
                    "best_epoch": outcome.evaluation["train"]["best_epoch"]
                }
            change = {
                split: 100 * (rows["with"][split] / rows["without"][split] - 1)
                for split in ("val_mae", "test_mae")
            }
            out[f"{name}/{arch}"] = rows | {"change_percent": change}
            print(
                f"{name:8s} {arch:4s} calendar: val MAE {rows['without']['val_mae']:.4f} -> "
                f"{rows['with']['val_mae']:.4f} ({change['val_mae']:+.2f} %), test MAE "
                f"{rows['without']['test_mae']:.4f} -> {rows['with']['test_mae']:.4f} "
                f"({change['test_mae']:+.2f} %); clamp: {rows['without']['negative']} negative "
                f"forecasts, test MAE {rows['without']['test_mae_unclamped']:.4f} unclamped",
                flush=True,
            )
    return out


def _scores(model, dataset) -> dict:
    """Mean MAE on val and test (observed values, clamped as the runtime clamps), and the
    test MAE and negative forecasts without the output floor."""
    unclamped = dataclasses.replace(dataset, output_floor=None)
    pred = unclamped.unscale_targets(reference_predict(model, dataset.test.x))
    return {
        "val_mae": _mean(evaluate(model, dataset, "val")["model"]["mae"]),
        "test_mae": _mean(evaluate(model, dataset, "test")["model"]["mae"]),
        "test_mae_unclamped": _mean(evaluate(model, unclamped, "test")["model"]["mae"]),
        "negative": int((pred < 0).sum()),
        "forecasts": int(pred.size),
        "output_floor": dataset.output_floor is not None,
    }


def _mean(values: list) -> float:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept))


if __name__ == "__main__":
    main()
