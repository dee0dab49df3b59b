"""Federated vs centrally trained vs local-only forecasters, per horizon, plus bytes per round.

Three sites: the NYC airports (EWR, JFK, LGA), 2013 hourly weather, each site holding only its own
rows (8 variables, last 24 h -> next 6 h of temperature). All models have the same architecture and
the same passes over each site's data:

* central: one model trained on the three sites' training windows pooled (what federated training
  approximates without moving the data), scaled with the pooled statistics;
* local-only: one model per site on its own data and its own scaler;
* federated: Flower simulation, ``rounds`` x 1 local epoch, FedAvg with fp32 updates, FedAvg with
  int8 updates, and (``--fedprox MU``) FedProx.

Every model is scored on every site's own test split (raw units, °F); per horizon step, the sites'
MAEs are averaged weighted by their test windows. Bytes per round are what the server counted
(``ArrayRecord.count_bytes``). Prints tables and writes benchmarks/out/fl_compare.json.

Run: .venv/bin/python benchmarks/fl_compare.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from edgecomp._io import atomic_write_text
from edgecomp.data import DataConfig, prepare
from edgecomp.data.windows import Windows
from edgecomp.fl.config import FLConfig
from edgecomp.fl.simulation import simulate
from edgecomp.fl.sites import split_by_site
from edgecomp.fl.stats import pooled_scaler, site_moments
from edgecomp.models import build_model, resolve_hparams
from edgecomp.spec import Model, ModelSpec
from edgecomp.train import TrainConfig, train_module
from edgecomp.workflow import dataset_for, evaluate

ROOT = Path(__file__).resolve().parents[1]
WEATHER = ROOT / "examples" / "data" / "nyc_airports_weather_2013_hourly.csv.gz"
VARIABLES = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "precip", "pressure", "visib")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 days per site, tiny model")
    parser.add_argument("--rounds", type=int, default=8, help="= central/local epochs")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--fedprox", type=float, default=None, metavar="MU")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.hidden = 2, 8
    return args


def _concat(windows: list[Windows]) -> Windows:
    return Windows(
        *(np.concatenate([getattr(w, k) for w in windows]) for k in ("x", "y", "starts"))
    )


def central(sites: dict[str, Path], data: DataConfig, train: TrainConfig) -> dict:
    """One model on the pooled training windows, scored per site."""
    datasets = {s: prepare(p, data) for s, p in sites.items()}
    rows = [ds.values[slice(*ds.bounds["train"])] for ds in datasets.values()]
    mean, std = pooled_scaler([site_moments(r) for r in rows])
    datasets = {s: ds.with_scaler(mean, std) for s, ds in datasets.items()}
    first = next(iter(datasets.values()))
    fields = first.spec_fields() | {
        "scaler": {"kind": "standard", "mean": list(mean), "std": list(std)}
    }
    spec = ModelSpec(arch=train.arch, hparams=resolve_hparams(train.arch, train.hparams), **fields)
    torch.manual_seed(train.seed)
    module = build_model(spec)
    pooled = [_concat([ds.split(s) for ds in datasets.values()]) for s in ("train", "val")]
    train_module(module, *pooled, train)
    model = Model(module, spec)
    return {s: evaluate(model, ds) for s, ds in datasets.items()}


def local_only(sites: dict[str, Path], data: DataConfig, train: TrainConfig) -> dict:
    """One model per site, trained and scored on that site only."""
    out = {}
    for site, path in sites.items():
        ds = prepare(path, data)
        spec = ModelSpec(
            arch=train.arch, hparams=resolve_hparams(train.arch, train.hparams), **ds.spec_fields()
        )
        torch.manual_seed(train.seed)
        module = build_model(spec)
        train_module(module, ds.train, ds.val, train)
        out[site] = evaluate(Model(module, spec), ds)
    return out


def federated(sites: dict[str, Path], config: FLConfig) -> tuple[dict, dict]:
    """A Flower simulation; the global model scored per site, and the run's summary."""
    from edgecomp.checkpoint import load_checkpoint

    summary = simulate(config)
    model = load_checkpoint(config.out)
    return {s: evaluate(model, dataset_for(model.spec, p)) for s, p in sites.items()}, summary


def weighted(per_site: dict, key: str = "model") -> list[float]:
    """Per horizon step: the sites' test MAE averaged weighted by their test windows."""
    n = np.array([e["n_windows"] for e in per_site.values()], dtype=np.float64)
    if key == "model":
        mae = np.array([e["model"]["mae"] for e in per_site.values()])
    else:
        mae = np.array([e["baselines"][key]["mae"] for e in per_site.values()])
    return (n @ mae / n.sum()).tolist()


def _traffic(summary: dict) -> dict:
    rounds = summary["rounds"]
    return {
        "up_bytes_per_round": float(np.mean([r["up_bytes"] for r in rounds])),
        "down_bytes_per_round": float(np.mean([r["down_bytes"] for r in rounds])),
        "clients_per_round": float(np.mean([r["clients"] for r in rounds])),
        "val_mae_mean_per_round": [r["evaluate"].get("val-mae-mean") for r in rounds],
    }


def run(args: argparse.Namespace) -> dict:
    work = args.out / "fl_compare"
    max_rows = 24 * 60 if args.quick else None
    sites = split_by_site(WEATHER, "origin", work / "sites", max_rows=max_rows)
    data = DataConfig(input_len=24, horizon=6, features=VARIABLES, targets=("temp",))
    train = TrainConfig(
        hparams={"hidden": args.hidden, "layers": 1}, epochs=args.rounds, patience=3
    )
    results, timings = {}, {}
    began = time.perf_counter()
    results["central"] = central(sites, data, train)
    timings["central"] = time.perf_counter() - began
    began = time.perf_counter()
    results["local-only"] = local_only(sites, data, train)
    timings["local-only"] = time.perf_counter() - began
    variants = [("fedavg", 0.0, "fp32"), ("fedavg", 0.0, "int8")]
    if args.fedprox is not None:
        variants.append(("fedprox", args.fedprox, "fp32"))
    traffic = {}
    for strategy, mu, updates in variants:
        name = f"federated {strategy} {updates}"
        fl = FLConfig(
            data=data,
            train=TrainConfig(hparams=train.hparams, epochs=1),
            sites=tuple(str(p) for p in sites.values()),
            rounds=args.rounds,
            strategy=strategy,
            proximal_mu=mu,
            updates=updates,
            out=str(work / name.replace(" ", "-")),
        )
        began = time.perf_counter()
        results[name], summary = federated(sites, fl)
        timings[name] = time.perf_counter() - began
        traffic[name] = _traffic(summary)
    return _report(results, traffic, timings, args, data)


def _report(results: dict, traffic: dict, timings: dict, args, data: DataConfig) -> dict:
    first = next(iter(results.values()))
    rows = {name: weighted(per_site) for name, per_site in results.items()}
    rows["last value (baseline)"] = weighted(first, "last_value")
    return {
        "setup": {
            "sites": list(first),
            "test_windows": {s: e["n_windows"] for s, e in first.items()},
            "input_len": data.input_len,
            "horizon": data.horizon,
            "rounds_or_epochs": args.rounds,
            "hidden": args.hidden,
            "quick": args.quick,
        },
        "test_mae_per_horizon": rows,
        "per_site_mae_mean": {
            name: {s: float(np.mean(e["model"]["mae"])) for s, e in per_site.items()}
            for name, per_site in results.items()
        },
        "traffic": traffic,
        "seconds": timings,
    }


def _print(report: dict) -> None:
    horizon = report["setup"]["horizon"]
    print("test MAE (°F) per horizon step, sites weighted by test windows")
    print(
        f"{'model':30s}" + "".join(f"{'h' + str(h + 1):>8s}" for h in range(horizon)) + "    mean"
    )
    for name, mae in report["test_mae_per_horizon"].items():
        print(f"{name:30s}" + "".join(f"{v:8.3f}" for v in mae) + f"{np.mean(mae):8.3f}")
    print("\nbytes per round (all clients)      up (clients->server)   down (server->clients)")
    for name, t in report["traffic"].items():
        print(f"{name:34s} {t['up_bytes_per_round']:>12,.0f} {t['down_bytes_per_round']:>20,.0f}")
    effect = report["int8_vs_fp32"]
    steps = ", ".join(f"{c:+.2f}%" for c in effect["mae_change_percent_per_step"])
    print(
        f"\nint8 updates: {effect['upload_bytes_ratio']:.1%} of the fp32 upload bytes; "
        f"test MAE change per step vs fp32 updates: {steps}"
    )


def main() -> int:
    torch.set_num_threads(1)
    args = parse_args()
    report = run(args)
    report["int8_vs_fp32"] = _int8_effect(report)
    _print(report)
    path = args.out / "fl_compare.json"
    atomic_write_text(path, json.dumps(report, indent=2))
    print(f"\nwrote {path}")
    return 0


def _int8_effect(report: dict) -> dict:
    fp32, int8 = (report["traffic"][f"federated fedavg {u}"] for u in ("fp32", "int8"))
    mae = report["test_mae_per_horizon"]
    return {
        "upload_bytes_ratio": int8["up_bytes_per_round"] / fp32["up_bytes_per_round"],
        "mae_change_percent_per_step": [
            (b / a - 1) * 100
            for a, b in zip(mae["federated fedavg fp32"], mae["federated fedavg int8"], strict=True)
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
