"""Cost per new reading on a gateway: incremental step model against the full window, side by side.

    .venv/bin/python benchmarks/stream_cost.py                 # traffic, L=48, H=8
    .venv/bin/python benchmarks/stream_cost.py --rounds 5 --per-round 200   # quicker

For each forecaster it builds artifacts with ``stream=true`` (fp32 and int8), then pushes the real
traffic test-split readings (raw, NaN where missing, as a gateway sees them) through
``Model.stream()`` one at a time, forecasting after every reading, in these modes: incremental (the
step model), windowed fp32 and windowed int8 (``predict`` on the window), and the int8 artifact's
own incremental stream ("engines" says what ran each: an LSTM/GRU on the native engine steps on its
``.native`` file, else the step model's numpy kernel or onnxruntime). Rounds interleave the
variants in random order; the figure is the median over rounds of the mean time per ``push``;
"engine only" times the bare step (what the fp32 stream runs: for LSTM/GRU the native kernel or the
numpy kernel, ``step_kernel``; and the ONNX step model on onnxruntime beside it) and the bare
windowed models; "predict's own cost" times ``predict`` on one raw window with the engine call
replaced by a copy of its recorded output (checks, imputation test, scaling, unscaling: all but the
engine). Forecasters: an exact TCN (kernel 4, dilations 1, 2, 4, ... while the receptive field fits
L: 43 for L = 48; trained here) and, for L = 48, the traffic example's TCN (receptive field 61),
LSTM and GRU when `make demo` has trained them (or ``--checkpoints DIR`` holds them; else, and for
other L, trained here for ``--epochs``); ``--archs lstm,gru`` limits the run. Writes
benchmarks/out/stream_cost.json (stream_cost_L<L>.json for another ``--input-len``; ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples/data/odot_detector_counts_15min.parquet"
CHECKPOINTS = ROOT / "examples/traffic/out/checkpoints"
OUT = ROOT / "benchmarks/out"


def checkpoints(
    tmp: Path, epochs: int, input_len: int, names: list[str], given: Path | None
) -> dict[str, Path]:
    """name -> checkpoint for ``names``: an exact TCN trained here; the others from ``given`` (or
    the traffic example when L = 48 and it has been run), else trained here."""
    from edgecomp.data import DataConfig
    from edgecomp.models import receptive_field
    from edgecomp.train import TrainConfig
    from edgecomp.workflow import train_checkpoint

    config = DataConfig(input_len=input_len, horizon=8, id_col="detector", value_cols=("total",))
    dilations = [1]  # kernel 4: the longest 1, 2, 4, ... whose receptive field fits the window
    while receptive_field(4, [*dilations, dilations[-1] * 2]) <= input_len:
        dilations.append(dilations[-1] * 2)
    wanted = {"tcn-exact": ("tcn", {"channels": 32, "kernel": 4, "dilations": dilations})}
    wanted = {k: v for k, v in wanted.items() if k in names}
    found = {}
    for arch in [n for n in ("tcn", "lstm", "gru") if n in names]:
        folder = given or (CHECKPOINTS if input_len == 48 else None)
        if folder and (folder / arch / "spec.json").is_file():
            found[arch] = folder / arch
        else:
            wanted[arch] = (arch, {})
    for name, (arch, hparams) in wanted.items():
        train = TrainConfig(arch=arch, hparams=hparams, epochs=epochs)
        found[name] = train_checkpoint(DATA, config, train, tmp / name).path
    return found


def build(name: str, checkpoint: Path, tmp: Path) -> dict:
    """fp32 (with the step model) and int8 artifacts of one checkpoint."""
    from edgecomp.pipeline import BuildConfig
    from edgecomp.workflow import build_artifact

    fp32 = build_artifact(
        str(checkpoint),
        DATA,
        BuildConfig(precision="fp32", options={"stream": True}),
        tmp / f"{name}-fp32.edgepkg",
    )
    int8 = build_artifact(  # with its own step model: the stream an int8 artifact gives
        str(checkpoint),
        DATA,
        BuildConfig(precision="int8", options={"stream": True}),
        tmp / f"{name}-int8.edgepkg",
    )
    return {"fp32": fp32.path, "int8": int8.path, "stream": fp32.manifest["stream"]}


def readings(model) -> tuple[np.ndarray, float]:
    """The test split's raw readings [T, F] (NaN where missing) and the sampling period."""
    from edgecomp.spec import ModelSpec
    from edgecomp.workflow import dataset_for

    dataset = dataset_for(ModelSpec.from_dict(model.spec), DATA)
    start, end = dataset.bounds["test"]
    return dataset.raw.to_numpy(dtype="float64")[start:end], float(model.spec["period_s"])


class Feed:
    """A stream and an endless, time-ordered supply of real readings for it."""

    def __init__(self, model, mode: str, rows: np.ndarray, period: float) -> None:
        self.stream = model.stream(mode=mode)
        self.rows, self.period, self.i = rows, period, 0
        for _ in range(model.input_len):  # fill the window before timing
            self.push()

    def push(self):
        row = self.rows[self.i % len(self.rows)]
        y = self.stream.push(self.i * self.period, row)
        self.i += 1
        return y


def timed(call, n: int) -> float:
    """Mean seconds per call over ``n`` calls."""
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n


class _Recorded:
    """An engine stand-in that returns a copy of one real output: what is left of a ``predict``
    call is its own work (checks, scaling, unscaling), measured apart from the engine's noise."""

    def __init__(self, output: np.ndarray) -> None:
        self.output = output

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.output.copy()


def _own_cost(path: Path, raw: np.ndarray):
    """``predict(raw)`` on a model whose engine is ``_Recorded`` (its copy of a [1, H, F_out]
    array included: well under a microsecond)."""
    import edgecomp_runtime as ecr

    model = ecr.load(path, threads=1)
    output = model._engine.run(model.scale_window(raw[None]))
    model._engine = _Recorded(output)  # NOTE: a benchmark-only swap of the private engine
    return lambda: model.predict(raw)


def _step_engine(stream) -> str:
    """What runs a stream's steps: the native kernel, the numpy kernel or the ONNX step model."""
    runner = stream._runner
    if getattr(runner, "native", None) is not None:
        return "native"
    return "numpy kernel" if getattr(runner, "kernel", None) is not None else "onnxruntime"


def measure(artifacts: dict, rounds: int, per_round: int, seed: int) -> dict:
    import edgecomp_runtime as ecr

    fp32, int8 = ecr.load(artifacts["fp32"], threads=1), ecr.load(artifacts["int8"], threads=1)
    rows, period = readings(fp32)
    feeds = {
        "incremental": Feed(fp32, "incremental", rows, period),
        "windowed fp32": Feed(fp32, "windowed", rows, period),
        "windowed int8": Feed(int8, "windowed", rows, period),
        "incremental int8": Feed(int8, "incremental", rows, period),
    }
    from edgecomp_runtime.step import StepRunner, step_runner, stream_section

    section = stream_section(fp32.manifest)
    runner = step_runner(fp32, section)  # its own state; the numpy kernel where there is one
    onnx_runner = StepRunner(fp32.file(section["step_file"]), section, threads=1)
    reading = fp32.scale_window(np.nan_to_num(rows[:1]))[0]
    raw = np.nan_to_num(rows[: fp32.input_len])
    window = fp32.scale_window(raw[None])
    calls = {name: feed.push for name, feed in feeds.items()}
    calls |= {
        "engine step": lambda: runner.step(reading),
        "engine step onnxruntime": lambda: onnx_runner.step(reading),
        "engine window": lambda: fp32.run_scaled(window),
        "engine window int8": lambda: int8.run_scaled(window),
        "predict window": _own_cost(artifacts["fp32"], raw),
        "predict window int8": _own_cost(artifacts["int8"], raw),
    }
    times = {name: [] for name in calls}
    order = random.Random(seed)
    for _ in range(rounds):
        names = list(calls)
        order.shuffle(names)
        for name in names:
            times[name].append(timed(calls[name], per_round))
    us = {name: float(np.median(t)) * 1e6 for name, t in times.items()}
    replays = feeds["incremental"].stream.stats["replays"]
    return {
        "us_per_reading": {name: us[name] for name in feeds},
        "engine_us": {
            "step": us["engine step"],
            "step_kernel": "native"
            if runner.native is not None
            else section.get("kernel", {}).get("cell"),
            "step_onnxruntime": us["engine step onnxruntime"],
            "window": us["engine window"],
            "window_int8": us["engine window int8"],
        },
        # predict's own cost at batch 1 (raw window in, raw forecast out), the engine call stubbed
        "predict_overhead_us": {"fp32": us["predict window"], "int8": us["predict window int8"]},
        "speedup_vs_windowed_fp32": us["windowed fp32"] / us["incremental"],
        "speedup_vs_windowed_int8": us["windowed int8"] / us["incremental"],
        # the int8 artifact's own stream against its own windowed predict (the figure of issue 21)
        "speedup_int8_stream_vs_windowed_int8": us["windowed int8"] / us["incremental int8"],
        "engines": {
            "windowed fp32": fp32.backend,
            "windowed int8": int8.backend,
            "incremental": _step_engine(feeds["incremental"].stream),
            "incremental int8": _step_engine(feeds["incremental int8"].stream),
        },
        "replays": replays,
        "readings": feeds["incremental"].i,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--per-round", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=3, help="for the models trained here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--input-len", type=int, default=48, help="window length L")
    parser.add_argument("--archs", default="lstm,gru,tcn,tcn-exact", help="comma-separated")
    parser.add_argument(
        "--checkpoints", type=Path, help="folder with lstm/, gru/, tcn/ checkpoints (L = 48)"
    )
    parser.add_argument("--out", type=Path, help="the JSON to write (default: see above)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    results = {
        "data": DATA.name,
        "input_len": args.input_len,
        "horizon": 8,
        "rounds": args.rounds,
        "per_round": args.per_round,
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="stream-cost-") as tmp:
        names = args.archs.split(",")
        found = checkpoints(Path(tmp), args.epochs, args.input_len, names, args.checkpoints)
        for name, checkpoint in found.items():
            artifacts = build(name, checkpoint, Path(tmp))
            row = measure(artifacts, args.rounds, args.per_round, args.seed)
            section = artifacts["stream"]
            keys = ("kind", "exact", "allowed", "reason", "worst_increase")
            row["step_model"] = {k: section[k] for k in keys}
            row["step_model"]["metrics"] = section["metrics"]
            results["models"][name] = row
            print_row(name, row)
    suffix = "" if args.input_len == 48 else f"_L{args.input_len}"
    path = args.out or OUT / f"stream_cost{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")


def print_row(name: str, row: dict) -> None:
    us, engine, step = row["us_per_reading"], row["engine_us"], row["step_model"]
    metrics, worst = step["metrics"], step["worst_increase"]
    own = row["predict_overhead_us"]
    print(
        f"{name:<10} per reading: incremental {us['incremental']:6.1f} us, windowed fp32 "
        f"{us['windowed fp32']:6.1f} us ({row['speedup_vs_windowed_fp32']:.2f}x), windowed int8 "
        f"{us['windowed int8']:6.1f} us ({row['speedup_vs_windowed_int8']:.2f}x); engine only: "
        f"step {engine['step']:6.1f} us, window {engine['window']:6.1f} us "
        f"({engine['window'] / engine['step']:.2f}x)\n"
        f"{'':<10} step engine: {engine['step']:6.1f} us ({engine['step_kernel'] or 'onnx'}), "
        f"onnxruntime {engine['step_onnxruntime']:6.1f} us; window int8 "
        f"{engine['window_int8']:6.1f} us; predict's own cost (b1) fp32 "
        f"{own['fp32']:5.1f} us, int8 {own['int8']:5.1f} us\n"
        f"{'':<10} exact {step['exact']}, allowed {step['allowed']}, stream MAE vs windowed "
        f"worst step {worst:+.2%}, |stream - windowed| <= {max(metrics['deviation_mae']):.3f} "
        f"(mean per step), replays {row['replays']} in {row['readings']} readings\n"
        f"{'':<10} int8 artifact: stream {us['incremental int8']:6.1f} us "
        f"({row['engines']['incremental int8']}) vs windowed {us['windowed int8']:6.1f} us "
        f"({row['engines']['windowed int8']}): "
        f"{row['speedup_int8_stream_vs_windowed_int8']:.2f}x",
        flush=True,
    )


if __name__ == "__main__":
    main()
