"""Gateway under load: `edgecomp-runtime serve` against a real Mosquitto, bursts and steady rates.

    .venv/bin/python benchmarks/gateway_load.py --artifact traffic-tcn-int8.edgepkg
    .venv/bin/python benchmarks/gateway_load.py --artifact A --burst 10000 --rates 250 1000 2000

Starts a private Mosquitto on 127.0.0.1 and the service pinned to one core (``taskset -c 0``,
``--threads 1``; this script and the broker keep off core 0), then publishes real Oregon DOT
counts (22 detectors; the rows repeat when the run needs more than the data has, under fresh
timestamps one period apart, ending before now) one reading per QoS 1 message:

* **burst**: ``--burst`` readings as fast as the publisher can send them; then waits until the
  service has processed them all (or ``--settle`` seconds pass);
* **sustained**: each of ``--rates`` readings per second, paced, for ``--seconds`` each;
* **http**: ``--clients`` concurrent clients send ``--requests`` GET /health in all; then
  ``--idle`` connections are opened and left silent, and one more client is timed.

Per phase it reports readings/s published and processed, forecasts/s, p50/p99 reading-to-forecast
latency (publish to forecast received by a subscriber, both on this host), loss (readings
published minus readings the service processed: /health counters), the CPU time the service got
(its share of the phase's wall time, and readings processed per CPU-second: what one dedicated
core would sustain) and the service's RSS sampled every 0.25 s. ``--predict-windows`` also runs
``Model.predict`` on that many real traffic windows (float64) at once in a fresh process and
reports its peak RSS against the input's size. Writes benchmarks/out/gateway_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples/data/odot_detector_counts_15min.parquet"
OUT = ROOT / "benchmarks/out/gateway_load.json"
PREDICT_SCRIPT = """
import json, resource, sys, numpy as np, edgecomp_runtime as ecr
model = ecr.load(sys.argv[1])
rows = np.load(sys.argv[3])  # real traffic rows [T, F], NaN where missing
starts = np.arange(int(sys.argv[2])) % (len(rows) - model.input_len + 1)
x = rows[starts[:, None] + np.arange(model.input_len)]  # [N, L, F] float64, a real copy
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
y = model.predict(x)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"windows": len(x), "input_mb": x.nbytes / 2**20, "rss_before_mb": before,
                  "peak_rss_mb": peak, "output_shape": list(y.shape)}))
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, required=True, help="e.g. the traffic TCN int8")
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--rates", type=float, nargs="*", default=[250.0, 1000.0, 2000.0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per sustained rate")
    parser.add_argument("--settle", type=float, default=120.0, help="max wait after a phase")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=300)
    parser.add_argument("--predict-windows", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=OUT)
    return parser.parse_args()


def traffic_rows() -> tuple[list[str], np.ndarray]:
    """The ODOT counts wide: detector names and rows [T, 22] (NaN where missing)."""
    import pandas as pd

    frame = pd.read_parquet(DATA)
    wide = frame.pivot_table(index="timestamp", columns="detector", values="total", aggfunc="sum")
    return [str(c) for c in wide.columns], wide.to_numpy(dtype=np.float64)


class Feed:
    """Readings in order: real rows, synthetic timestamps one period apart ending before now."""

    def __init__(self, features: list[str], rows: np.ndarray, period: float, total: int) -> None:
        self.features, self.rows, self.period = features, rows, period
        self.t0 = time.time() - (total + 10) * period
        self.index = 0

    def next(self) -> tuple[float, bytes]:
        row = self.rows[self.index % len(self.rows)]
        t = self.t0 + self.index * self.period
        self.index += 1
        values = {
            n: (None if np.isnan(v) else v)
            for n, v in zip(self.features, row.tolist(), strict=True)
        }
        return t, json.dumps({"t": t, "values": values}).encode()


class Service:
    """The broker, the service on core 0, a publisher and a forecast subscriber."""

    def __init__(self, artifact: Path) -> None:
        import paho.mqtt.client as mqtt

        sys.path.insert(0, str(ROOT / "tests"))  # the test suite's mosquitto launcher
        from helpers.broker import MosquittoBroker

        self.broker = MosquittoBroker().start()
        pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
        command = [*pin, sys.executable, "-m", "edgecomp_runtime", "serve", str(artifact)]
        command += ["--broker", f"127.0.0.1:{self.broker.port}", "--http", "127.0.0.1:0"]
        command += ["--device", "bench", "--threads", "1"]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        started = json.loads(self.process.stdout.readline())
        self.http, self.topics = f"http://{started['http']}", started["topics"]
        self.received: queue.SimpleQueue = queue.SimpleQueue()
        self.subscriber = self._client(mqtt, subscribe=True)
        self.publisher = self._client(mqtt, subscribe=False)
        self.wait(lambda h: h["mqtt"] == "connected", 30)
        self.rss: list[tuple[float, float]] = []
        self._sampling = threading.Event()
        threading.Thread(target=self._sample_rss, daemon=True).start()

    def _client(self, mqtt, *, subscribe: bool):
        client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        client.max_inflight_messages_set(1000)
        ready = threading.Event()
        if subscribe:
            client.on_connect = lambda c, u, f, r, p: c.subscribe(self.topics["forecast"], 1)
            client.on_subscribe = lambda c, u, m, r, p: ready.set()
            client.on_message = lambda c, u, m: self.received.put((time.perf_counter(), m.payload))
        else:
            client.on_connect = lambda c, u, f, r, p: ready.set()
        client.connect("127.0.0.1", self.broker.port)
        client.loop_start()
        ready.wait(10)
        return client

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the service has used so far, from /proc."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def health(self) -> dict:
        with urllib.request.urlopen(self.http + "/health", timeout=10) as response:
            return json.loads(response.read())

    def wait(self, done, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                body = self.health()
            except OSError:
                body = None
            if body is not None and (done(body) or time.monotonic() > deadline):
                return body
            time.sleep(0.05)

    def _sample_rss(self) -> None:
        start = time.monotonic()
        status = Path(f"/proc/{self.process.pid}/status")
        while self.process.poll() is None:
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.rss.append(
                        (round(time.monotonic() - start, 2), int(line.split()[1]) / 1024)
                    )
            time.sleep(0.25)

    def close(self) -> None:
        for client in (self.subscriber, self.publisher):
            client.loop_stop()
            client.disconnect()
        self.process.terminate()
        self.process.wait(timeout=30)
        self.broker.stop()


def drain(service: Service) -> list[tuple[float, float]]:
    """(receive time, forecast t) of every forecast received so far."""
    out = []
    while True:
        try:
            at, payload = service.received.get_nowait()
        except queue.Empty:
            return out
        out.append((at, json.loads(payload)["t"]))


def run_phase(service: Service, feed: Feed, n: int, rate: float | None, settle: float) -> dict:
    """Publish ``n`` readings (paced at ``rate``/s, or as fast as possible); measure."""
    before = service.health()["counters"]
    drain(service)
    cpu = service.cpu_s()
    sent: dict[float, float] = {}
    start = time.perf_counter()
    for i in range(n):
        if rate is not None:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        t, payload = feed.next()
        sent[t] = time.perf_counter()
        service.publisher.publish(service.topics["readings"], payload, qos=1)
    published = time.perf_counter() - start
    target = before["readings"] + n
    health = service.wait(lambda h: h["counters"]["processed"] >= target, settle)
    elapsed = time.perf_counter() - start
    cpu = service.cpu_s() - cpu
    time.sleep(0.5)  # the last forecasts in flight to the subscriber
    got = [(at, t) for at, t in drain(service) if t in sent]
    latency = np.array([(at - sent[t]) * 1e3 for at, t in got])
    processed = health["counters"]["processed"] - before["processed"]
    last = max((at for at, _ in got), default=start)
    return {
        "readings": n,
        "rate_asked": rate,
        "published_per_s": round(n / published, 1),
        "processed_per_s": round(processed / elapsed, 1),
        "forecasts_received": len(got),
        "forecasts_per_s": round(len(got) / max(last - start, 1e-9), 1),
        "latency_ms_p50": round(float(np.percentile(latency, 50)), 2) if len(got) else None,
        "latency_ms_p99": round(float(np.percentile(latency, 99)), 2) if len(got) else None,
        "lost": n - processed,
        "service_cpu_s": round(cpu, 2),
        "service_cpu_share": round(cpu / elapsed, 2),
        "processed_per_cpu_s": round(processed / max(cpu, 1e-9), 1),
        "rejected": health["counters"]["rejected"],
    }


def http_phase(service: Service, clients: int, requests: int, idle: int) -> dict:
    """Latency of /health under concurrent clients; a new client while many idle ones wait."""

    def one(_: int) -> float:
        start = time.perf_counter()
        with urllib.request.urlopen(service.http + "/health", timeout=30) as response:
            response.read()
        return (time.perf_counter() - start) * 1e3

    with ThreadPoolExecutor(clients) as pool:
        times = np.array(list(pool.map(one, range(requests))))
    host, port = service.http.removeprefix("http://").rsplit(":", 1)
    sockets = [socket.create_connection((host, int(port))) for _ in range(idle)]
    try:
        behind_idle = [one(0) for _ in range(5)]
    finally:
        for sock in sockets:
            sock.close()
    return {
        "clients": clients,
        "requests": requests,
        "p50_ms": round(float(np.percentile(times, 50)), 2),
        "p99_ms": round(float(np.percentile(times, 99)), 2),
        "idle_connections": idle,
        "new_client_ms_max_of_5": round(max(behind_idle), 2),
    }


def predict_memory(artifact: Path, windows: int, rows: np.ndarray) -> dict:
    """Peak RSS of a fresh process predicting ``windows`` real traffic windows in one call."""
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "rows.npy", rows)
        result = subprocess.run(
            [sys.executable, "-c", PREDICT_SCRIPT, str(artifact), str(windows), f"{tmp}/rows.npy"],
            capture_output=True, text=True, check=True, timeout=600,
        )  # fmt: skip
    out = json.loads(result.stdout.strip().splitlines()[-1])
    out["peak_minus_input_mb"] = round(out["peak_rss_mb"] - out["input_mb"], 1)
    return out


def main() -> None:
    args = parse_args()
    import edgecomp_runtime as ecr

    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, os.sched_getaffinity(0) - {0})  # core 0 is the service's

    model = ecr.load(args.artifact)
    features, rows = traffic_rows()
    total = args.burst + int(sum(rate * args.seconds for rate in args.rates))
    feed = Feed(features, rows, model.spec["period_s"], total + model.input_len)
    service = Service(args.artifact)
    try:
        warm = run_phase(service, feed, model.input_len, None, args.settle)  # fills the window
        phases = {"warmup": warm, "burst": run_phase(service, feed, args.burst, None, args.settle)}
        for rate in args.rates:
            n = int(rate * args.seconds)
            phases[f"sustained_{rate:g}"] = run_phase(service, feed, n, rate, args.settle)
        phases["http"] = http_phase(service, args.clients, args.requests, args.idle)
        health = service.health()
    finally:
        service.close()
    result = {
        "artifact": args.artifact.name,
        "mode": health["mode"],
        "host": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared)",
        "service_core": "taskset -c 0" if shutil.which("taskset") else "not pinned",
        "phases": phases,
        "counters": health["counters"],
        "rss_mb": service.rss,
        "rss_mb_max": max(mb for _, mb in service.rss),
        "predict": predict_memory(args.artifact, args.predict_windows, rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print_table(result)


def print_table(result: dict) -> None:
    print(f"artifact {result['artifact']} ({result['mode']}), {result['host']}")
    print(
        "| phase | readings | published/s | processed/s | forecasts/s | p50 ms | p99 ms | lost "
        "| service CPU share | processed per CPU-s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, p in result["phases"].items():
        if name in ("warmup", "http"):
            continue
        print(
            f"| {name} | {p['readings']} | {p['published_per_s']} | {p['processed_per_s']} | "
            f"{p['forecasts_per_s']} | {p['latency_ms_p50']} | {p['latency_ms_p99']} | "
            f"{p['lost']} | {p['service_cpu_share']} | {p['processed_per_cpu_s']} |"
        )
    h = result["phases"]["http"]
    print(
        f"HTTP: {h['clients']} clients, {h['requests']} requests: p50 {h['p50_ms']} ms, p99 "
        f"{h['p99_ms']} ms; behind {h['idle_connections']} idle connections a new client took "
        f"at most {h['new_client_ms_max_of_5']} ms (5 tries)"
    )
    p = result["predict"]
    print(
        f"predict on {p['windows']} windows: input {p['input_mb']:.0f} MB, peak RSS "
        f"{p['peak_rss_mb']:.0f} MB (input + {p['peak_minus_input_mb']} MB); service RSS max "
        f"{result['rss_mb_max']:.0f} MB"
    )


if __name__ == "__main__":
    main()
