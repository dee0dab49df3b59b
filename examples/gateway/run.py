"""A gateway on real traffic data: readings over MQTT into `edgecomp-runtime serve`, forecasts out.

    .venv/bin/python examples/gateway/run.py            # the traffic example's TCN when trained
    .venv/bin/python examples/gateway/run.py --quick    # a tiny TCN trained here for 2 epochs

It builds an artifact with a step model (``stream=true``), starts a private Mosquitto broker on
127.0.0.1 and ``edgecomp-runtime serve`` against it, then replays the Oregon DOT test split (15-min
counts of 22 detectors, raw, NaN as null) reading by reading over MQTT in accelerated time
(``--speed`` readings per second). It collects the forecasts the service publishes and compares
them with what happened next, beside the manifest's build-time figures and the last-value
baseline. Writes examples/gateway/out/summary.json.
"""

from __future__ import annotations

import argparse
import json
import math
import queue
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples/data/odot_detector_counts_15min.parquet"
CHECKPOINT = ROOT / "examples/traffic/out/checkpoints/tcn"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    parser.add_argument("--quick", action="store_true", help="tiny TCN, 2 epochs (smoke test)")
    parser.add_argument("--speed", type=float, default=50.0, help="readings per second (0: max)")
    parser.add_argument("--limit", type=int, default=None, help="replay only this many readings")
    return parser.parse_args()


def artifact(out: Path, quick: bool) -> tuple[Path, dict]:
    """The TCN int8 artifact with a step model: the traffic example's checkpoint, or a tiny one."""
    import torch

    from edgecomp.data import DataConfig
    from edgecomp.pipeline import BuildConfig
    from edgecomp.train import TrainConfig
    from edgecomp.workflow import build_artifact, train_checkpoint

    torch.set_num_threads(1)
    checkpoint = CHECKPOINT
    if quick or not (checkpoint / "spec.json").is_file():
        config = DataConfig(input_len=48, horizon=8, id_col="detector", value_cols=("total",))
        train = TrainConfig(arch="tcn", hparams={"channels": 8}, epochs=2)
        checkpoint = train_checkpoint(DATA, config, train, out / "checkpoint").path
    build = BuildConfig(precision="int8", options={"stream": True})
    result = build_artifact(str(checkpoint), DATA, build, out / "traffic-tcn-int8.edgepkg")
    return result.path, result.manifest


def test_readings(model_spec: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epoch seconds [T], raw readings [T, F] with NaN, imputed truth [T, F]) of the test split."""
    from edgecomp.spec import ModelSpec
    from edgecomp.workflow import dataset_for

    dataset = dataset_for(ModelSpec.from_dict(model_spec), DATA)
    start, end = dataset.bounds["test"]
    seconds = dataset.raw.index[start:end].asi8 / 1e9
    return seconds, dataset.raw.to_numpy(dtype="float64")[start:end], dataset.values[start:end]


class Service:
    """`edgecomp-runtime serve` in a subprocess, plus an MQTT client on its topics."""

    def __init__(self, path: Path, port: int) -> None:
        import paho.mqtt.client as mqtt

        command = [
            sys.executable,
            "-m",
            "edgecomp_runtime",
            "serve",
            str(path),
            "--device",
            "odot",
            "--broker",
            f"127.0.0.1:{port}",
            "--http",
            "127.0.0.1:0",
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        started = json.loads(self.process.stdout.readline())
        self.http, self.topics = f"http://{started['http']}", started["topics"]
        self.forecasts: queue.Queue = queue.Queue()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda c, u, m: self.forecasts.put(json.loads(m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(self.topics["forecast"], qos=1)
        self.client.loop_start()
        self.wait_until(lambda h: h["mqtt"] == "connected")

    def get(self, route: str) -> dict:
        try:
            with urllib.request.urlopen(self.http + route, timeout=5) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())

    def wait_until(self, ok, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while not ok(health := self.get("/health")) and time.monotonic() < deadline:
            time.sleep(0.05)
        return health

    def publish(self, t: float, row: np.ndarray) -> None:
        values = [None if math.isnan(v) else v for v in row.tolist()]
        message = json.dumps({"t": t, "values": values})
        self.client.publish(self.topics["readings"], message, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        self.process.terminate()
        self.process.wait(timeout=10)


def replay(service: Service, seconds, raw, speed: float) -> list[dict]:
    """Publish every reading in order, ``speed`` per second; return the forecasts received."""
    started = time.monotonic()
    for i, (t, row) in enumerate(zip(seconds, raw, strict=True)):
        if speed > 0:
            time.sleep(max(0.0, started + i / speed - time.monotonic()))
        service.publish(float(t), row)
    service.wait_until(lambda h: h["stream"]["readings"] == len(raw))
    return [
        service.forecasts.get(timeout=10)
        for _ in range(service.get("/health")["stream"]["forecasts"])
    ]


def compare(forecasts: list[dict], seconds, truth, targets: list[int]) -> dict:
    """Per-horizon MAE of the served forecasts and of the last value, where the truth is known."""
    index = {float(t): i for i, t in enumerate(seconds)}
    served, last, actual = [], [], []
    for f in forecasts:
        i, horizon = index[f["t"]], len(f["forecast"])
        if i + horizon < len(truth):
            served.append(f["forecast"])
            last.append(np.repeat(truth[i : i + 1, targets], horizon, axis=0))
            actual.append(truth[i + 1 : i + 1 + horizon, targets])
    served, last, actual = (np.asarray(a, dtype=np.float64) for a in (served, last, actual))
    return {
        "n_forecasts": len(served),
        "served_mae": np.abs(served - actual).mean(axis=(0, 2)).tolist(),
        "last_value_mae": np.abs(last - actual).mean(axis=(0, 2)).tolist(),
    }


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))  # the test suite's launcher of Debian's mosquitto
    from helpers.broker import MosquittoBroker

    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path, manifest = artifact(args.out, args.quick)
    seconds, raw, truth = test_readings(manifest["spec"])
    seconds, raw, truth = seconds[: args.limit], raw[: args.limit], truth[: args.limit]
    targets = [manifest["spec"]["features"].index(t) for t in manifest["spec"]["targets"]]
    with MosquittoBroker() as broker:
        service = Service(path, broker.port)
        try:
            began = time.monotonic()
            forecasts = replay(service, seconds, raw, args.speed)
            elapsed = time.monotonic() - began
            health, summary = service.get("/health"), service.get("/manifest")
        finally:
            service.close()
    result = {
        "artifact": path.name,
        "stream": summary["stream"],
        "health": health,
        "replay_s": elapsed,
        "readings": len(raw),
        **compare(forecasts, seconds, truth, targets),
        "build": {k: manifest["stream"]["metrics"][k]["mae"] for k in ("stream", "windowed")},
        "build_worst_increase": manifest["stream"]["worst_increase"],
    }
    (args.out / "summary.json").write_text(json.dumps(result, indent=2))
    horizon = manifest["spec"]["horizon"]
    show(result, forecasts[-1 - horizon], truth, seconds, targets)


def show(result: dict, last: dict, truth, seconds, targets) -> None:
    stream, health = result["stream"], result["health"]
    print(
        f"artifact {result['artifact']}: stream mode {stream['mode']} ({stream['kind']}, "
        f"exact {stream['exact']}, allowed {stream['allowed']})"
    )
    print(
        f"replayed {result['readings']} readings in {result['replay_s']:.1f} s over MQTT; "
        f"{health['stream']['forecasts']} forecasts; stream counters {health['stream']}"
    )
    print(f"MAE per horizon step over {result['n_forecasts']} forecasts (vehicles per 15 min):")
    rows = [
        ("served now", result["served_mae"]),
        ("last value", result["last_value_mae"]),
        ("build: stream", result["build"]["stream"]),
        ("build: windowed", result["build"]["windowed"]),
    ]
    for label, values in rows:
        print(
            f"  {label:<16}"
            + " ".join(f"{v:6.3f}" for v in values)
            + f"  mean {np.mean(values):.3f}"
        )
    worst = result["build_worst_increase"]
    print(
        f"build: streaming MAE vs windowed, worst step {worst:+.2%} (budget "
        f"{stream['error_budget']:.0%}); served vs build streaming, mean |diff| "
        f"{np.mean(np.abs(np.subtract(result['served_mae'], result['build']['stream']))):.4f}"
    )
    i, horizon = list(seconds).index(last["t"]), len(last["forecast"])
    k = int(np.argmax(truth[:, targets].mean(axis=0)))  # the busiest detector
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(last["t"]))
    print(f"forecast made at {when} UTC for detector {last['targets'][k]}, next {horizon} steps:")
    print(f"  served {[round(row[k], 1) for row in last['forecast']]}")
    print(f"  truth  {[round(v, 1) for v in truth[i + 1 : i + 1 + horizon, targets[k]].tolist()]}")


if __name__ == "__main__":
    main()
