"""``edgecomp-runtime bench``: measure artifacts on the device itself, without torch or edgecomp.

Each artifact is measured in a fresh Python process that imports the runtime first (import time),
loads the artifact twice (cold: the engine's import included; warm), times ``predict`` per batch
size, scores per-step error when a data file is given, and reports its peak resident memory and
the device it ran on (``edgecomp_runtime.device``). The result is a list of "edgecomp-bench"
dicts: the JSON ``edgecomp report`` reads, with the device as a field.

Data files are wide tables as ``edgecomp-runtime predict`` reads them: CSV (or Parquet, with
pyarrow installed) with a header naming the artifact's feature columns and, optionally, a time
column; one row per sampling period. Every run of ``input_len + horizon`` evenly spaced rows is a
window and its truth; error is scored per horizon step on observed (non-missing) truth only.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgecomp_runtime._atomic import atomic_write
from edgecomp_runtime.errors import EdgecompRuntimeError, InputError

__all__ = [
    "SCHEMA",
    "BenchConfig",
    "BenchError",
    "artifact_info",
    "bench",
    "latency_stats",
    "measure",
]

SCHEMA = "edgecomp-bench"
SCHEMA_VERSION = 1
_CHUNK = 64  # windows per predict call when scoring (the default largest batch: no extra memory)
_TIME_NAMES = ("time", "timestamp", "date", "datetime", "time_hour")
_MEMORY_METHOD = "VmHWM of /proc/self/status of the fresh bench process (ru_maxrss elsewhere)"
# a fresh interpreter: the runtime's import is timed before anything else imports it
_CHILD = """
import json, sys, time
def peak():
    try:
        with open("/proc/self/status") as fh:
            return int([x for x in fh if x.startswith("VmHWM:")][0].split()[1]) / 1024
    except (OSError, IndexError, ValueError):
        return None
baseline = peak()
t0 = time.perf_counter_ns()
import edgecomp_runtime
import_ms = (time.perf_counter_ns() - t0) / 1e6
from edgecomp_runtime.bench import _child
print(json.dumps(_child(json.loads(sys.argv[1]), import_ms, baseline)))
"""


class BenchError(EdgecompRuntimeError, ValueError):
    """A benchmark cannot run; the message names the artifact, the file or the argument."""


@dataclass(frozen=True)
class BenchConfig:
    """How ``bench`` measures.

    Attributes:
        batch_sizes: Batch sizes to time; each gets keys ``b<size>``.
        threads: Engine intra-op threads (None: the engine's default).
        min_iters: Timed calls per batch size, at least.
        min_seconds: Timed seconds per batch size, at least (both minimums are met).
        warmup: Untimed calls before each timing loop.
        max_windows: Most data windows scored (the latest ones).
        device_name: The name the report shows for this device.
    """

    batch_sizes: tuple[int, ...] = (1, 64)
    threads: int | None = 1
    min_iters: int = 200
    min_seconds: float = 2.0
    warmup: int = 20
    max_windows: int = 4096
    device_name: str = "local"

    def __post_init__(self) -> None:
        if not self.batch_sizes or any(not _is_pos_int(b) for b in self.batch_sizes):
            raise BenchError(f"batch sizes must be positive integers, got {self.batch_sizes}")
        if self.threads is not None and not _is_pos_int(self.threads):
            raise BenchError(f"threads must be a positive integer, got {self.threads!r}")
        if not _is_pos_int(self.min_iters) or not _is_pos_int(self.max_windows):
            raise BenchError("min_iters and max_windows must be positive integers")
        if self.min_seconds < 0 or self.warmup < 0:
            raise BenchError("min_seconds and warmup must not be negative")


def bench(
    artifacts: Sequence[str | Path],
    *,
    data: str | Path | None = None,
    config: BenchConfig | None = None,
) -> list[dict[str, Any]]:
    """Measure each artifact in a fresh process on this device.

    Args:
        artifacts: ``.edgepkg`` files or unpacked artifact folders.
        data: Optional wide CSV/Parquet file (see the module docstring) for per-step error and
            real latency windows (else random windows around the artifact's training mean).
        config: How to measure (default ``BenchConfig()``).

    Returns:
        One "edgecomp-bench" dict per artifact.

    Raises:
        BenchError: An artifact or the data file is missing, or a measurement process failed;
            the message is one line naming the artifact and the cause.
    """
    config = config or BenchConfig()
    paths = [Path(a) for a in artifacts]
    for path in [*paths, *([Path(data)] if data is not None else [])]:
        if not path.exists():
            raise BenchError(f"{path}: no such file or folder")
    args = {"data": None if data is None else str(Path(data).resolve()), **asdict(config)}
    return [_run_child(path, args) for path in paths]


def measure(
    fn: Callable[[], object], *, warmup: int, min_iters: int, min_seconds: float
) -> np.ndarray:
    """Call ``fn`` ``warmup`` times, then time calls until both minimums are met; ms per call."""
    for _ in range(warmup):
        fn()
    times: list[int] = []
    deadline = time.perf_counter_ns() + int(min_seconds * 1e9)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while len(times) < min_iters or time.perf_counter_ns() < deadline:
            start = time.perf_counter_ns()
            fn()
            times.append(time.perf_counter_ns() - start)
    finally:
        if gc_was_enabled:
            gc.enable()
    return np.asarray(times, dtype=np.float64) / 1e6


def latency_stats(ms: np.ndarray) -> dict[str, Any]:
    """Percentiles, mean, spread and count of per-call times in milliseconds.

    ``quantiles_ms`` holds the 0th, 1st, ..., 100th percentiles: a bounded summary of the whole
    distribution (for plots and noise thresholds) whatever the number of calls.
    """
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
        "std_ms": float(ms.std()),
        "iters": int(ms.size),
        "seconds": float(ms.sum() / 1e3),
        "quantiles_ms": [float(q) for q in np.percentile(ms, np.arange(101))],
    }


def add_parser(commands: Any) -> None:
    """Add the ``bench`` subcommand to ``edgecomp-runtime``'s argparse subparsers."""
    parser = commands.add_parser(
        "bench", help="measure artifacts on this device (latency, memory, error); write JSON"
    )
    parser.add_argument("artifacts", nargs="+", type=Path, help=".edgepkg files or folders")
    parser.add_argument("--data", type=Path, help="wide CSV/Parquet file: per-step error")
    parser.add_argument("--batch-sizes", default="1,64", help="comma-separated (default 1,64)")
    parser.add_argument("--threads", type=int, default=1, help="engine threads (default 1)")
    parser.add_argument("--min-iters", type=int, default=200, help="timed calls per batch size")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="timed s per batch size")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls first")
    parser.add_argument("--device-name", default="local", help="this device's name in reports")
    parser.add_argument(
        "-o", "--output", type=Path, default=Path("bench.json"), help="JSON file to write"
    )
    parser.set_defaults(command=run_cli)


def run_cli(args: argparse.Namespace) -> dict[str, Any]:
    """``edgecomp-runtime bench``: measure, write the JSON atomically, return a short summary."""
    config = BenchConfig(
        batch_sizes=_batch_sizes(args.batch_sizes),
        threads=args.threads,
        min_iters=args.min_iters,
        min_seconds=args.min_seconds,
        warmup=args.warmup,
        device_name=args.device_name,
    )
    results = bench(args.artifacts, data=args.data, config=config)
    text = json.dumps(results, indent=1) + "\n"
    atomic_write(args.output, lambda fh: fh.write(text.encode()))
    return {"output": str(args.output), "artifacts": [_summary(r) for r in results]}


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise BenchError(f"--batch-sizes: expected integers like 1,64, got {text!r}") from None


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    accuracy = result.get("accuracy") or {}
    mae = (accuracy.get("artifact") or {}).get("mae")
    return {
        "artifact": result["artifact"]["name"],
        "device": result["device"]["name"],
        "engine": result["engine"]["engine"],
        "p50_ms": {k: round(v["p50_ms"], 4) for k, v in result["latency"].items()},
        "peak_rss_mb": round(result["memory"]["peak_rss_mb"], 1),
        "load_ms": round(result["load_ms"], 2),
        "mae": None if not mae else [None if m is None else round(m, 4) for m in mae],
    }


def _run_child(path: Path, args: dict[str, Any]) -> dict[str, Any]:
    payload = json.dumps({**args, "path": str(path.resolve())})
    # under qemu-user the interpreter is an emulated binary: the caller names the command to run
    python = shlex.split(os.environ.get("EDGECOMP_BENCH_PYTHON", "")) or [sys.executable]
    try:
        proc = subprocess.run(
            [*python, "-c", _CHILD, payload],
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{path}: the measurement took over an hour; stopped") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise BenchError(f"{path}: {lines[-1] if lines else 'the bench process failed'}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _child(args: dict[str, Any], import_ms: float, baseline_mb: float | None) -> dict[str, Any]:
    """The whole measurement of one artifact, in the fresh process (see ``_CHILD``)."""
    import edgecomp_runtime
    from edgecomp_runtime.device import describe

    rss_after_import = _peak_rss_mb()
    path, threads = Path(args["path"]), args["threads"]
    try:
        start = time.perf_counter_ns()
        model = edgecomp_runtime.load(path, threads=threads)
        cold_ms = (time.perf_counter_ns() - start) / 1e6
        rss_after_load = _peak_rss_mb()
        del model  # one model at a time: the peak is what a gateway holding one would reach
        gc.collect()
        start = time.perf_counter_ns()
        model = edgecomp_runtime.load(path, threads=threads)
        load_ms = (time.perf_counter_ns() - start) / 1e6
        accuracy, windows = None, None
        if args["data"] is not None:
            accuracy, windows = _score(model, Path(args["data"]), args["max_windows"])
        if windows is None or len(windows) == 0:
            windows = _random_windows(model.spec, max(args["batch_sizes"]))
        timing = _time_all(model, windows, args)
    except EdgecompRuntimeError as exc:
        sys.exit(f"{type(exc).__name__}: {exc}")
    device = describe(name=args["device_name"], threads=threads)
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "producer": "edgecomp-runtime bench",
        "device": device,
        "host": device,  # what readers of the compiler's bench JSON (report, markdown) read
        "runtime": model.info(),
        "engine": _engine_info(model),
        "artifact": artifact_info(path, model.manifest),
        **timing,
        "latency_inputs": "data" if accuracy and accuracy["n_windows"] else "random",
        "memory": {
            "baseline_rss_mb": baseline_mb,
            "import_ms": import_ms,
            "cold_load_ms": cold_ms,
            "rss_after_import_mb": rss_after_import,
            "rss_after_load_mb": rss_after_load,
            "peak_rss_mb": _peak_rss_mb(),
            "artifact_rss_mb": _peak_rss_mb() - rss_after_import,
            "method": _MEMORY_METHOD,
        },
        "import_ms": import_ms,
        "cold_load_ms": cold_ms,
        "load_ms": load_ms,
        "accuracy": accuracy,
    }


def _time_all(model: Any, windows: np.ndarray, args: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, dict[str, Any]] = {"latency": {}, "throughput": {}}
    for b in args["batch_sizes"]:
        x = np.ascontiguousarray(np.resize(windows, (b, *windows.shape[1:])), dtype=np.float32)
        x = x[0] if b == 1 else x
        stats = latency_stats(
            measure(
                lambda x=x: model.predict(x),
                warmup=args["warmup"],
                min_iters=args["min_iters"],
                min_seconds=args["min_seconds"],
            )
        )
        out["latency"][f"b{b}"] = stats
        out["throughput"][f"b{b}"] = b * 1e3 / stats["mean_ms"]
    return out


def _random_windows(spec: dict[str, Any], n: int) -> np.ndarray:
    """``n`` raw windows drawn around the training mean with its spread."""
    mean = np.asarray(spec["scaler"]["mean"], dtype=np.float32)
    std = np.asarray(spec["scaler"]["std"], dtype=np.float32)
    noise = np.random.default_rng(0).standard_normal((n, spec["input_len"], mean.size))
    return (mean + std * noise).astype(np.float32)


def _score(model: Any, data: Path, max_windows: int) -> tuple[dict[str, Any], np.ndarray]:
    """Per-step error on every evenly spaced window of ``data``; the windows the runtime took."""
    if model.spec.get("future"):  # its windows need times and future values: not scored here
        raise BenchError(
            f"{data}: the runtime bench does not score a model with known-future inputs "
            "(calendar or declared columns) on a data file; use edgecomp bench ARTIFACT --data FILE"
        )
    values, times = read_table(data, model.features)
    targets = values[:, [model.features.index(t) for t in model.targets]]
    span = model.input_len + model.horizon
    starts = _regular_starts(times, len(values), span, float(model.spec.get("period_s") or 0))
    n_gaps = max(len(values) - span + 1, 0) - len(starts)
    starts = starts[-max_windows:]
    windows = np.stack([values[s : s + model.input_len] for s in starts]) if starts else None
    if windows is None:
        raise BenchError(f"{data}: fewer than {span} evenly spaced rows (input_len + horizon)")
    truth = np.stack([targets[s + model.input_len : s + span] for s in starts])
    pred, ok = _predict_all(model, windows)
    if not ok.any():
        raise BenchError(f"{data}: the runtime refused all {len(windows)} windows")
    accuracy = {
        "split": f"data:{data.name}",
        "data": str(data),
        "n_windows": int(ok.sum()),
        "n_refused": int((~ok).sum()),
        "n_skipped_gaps": n_gaps,
        "artifact": step_errors(truth[ok], pred),
        "reference": None,
        "comparable": False,
        "delta_mae": None,
        "delta_mae_pct": None,
    }
    return accuracy, windows[ok]


def step_errors(truth: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """MAE and RMSE per horizon step over observed truth (missing truth left out, none imputed),
    with the counts as the compiler's ``horizon_metrics`` records them."""
    err = pred.astype(np.float64) - truth.astype(np.float64)
    observed = ~np.isnan(truth)
    counts = observed.sum(axis=(0, 2))
    abs_sum = np.where(observed, np.abs(err), 0.0).sum(axis=(0, 2))
    sq_sum = np.where(observed, err**2, 0.0).sum(axis=(0, 2))
    return {
        "mae": [float(s / n) if n else None for s, n in zip(abs_sum, counts, strict=True)],
        "rmse": [math.sqrt(s / n) if n else None for s, n in zip(sq_sum, counts, strict=True)],
        "scored": [int(n) for n in counts],
        "n_scored": int(counts.sum()),
        "n_imputed": 0,
        "n_missing": int((~observed).sum()),
        "unscored": {f"h{h + 1}": "no observed value" for h, n in enumerate(counts) if not n},
    }


def read_table(path: Path, features: list[str]) -> tuple[np.ndarray, list[float] | None]:
    """Feature columns [T, F] of a wide CSV or Parquet file, and its timestamps (s) if it has any.

    Raises:
        InputError: Unreadable file, missing column, bad cell; names the file and column.
    """
    if path.suffix.lower() == ".parquet":
        return _read_parquet(path, features)
    from edgecomp_runtime.tabular import has_time_column, read_csv

    try:  # a 'Time' or 'Date' header too, UTF-16, lines above the header: as read_csv reads
        timed = has_time_column(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the data file ({exc})") from None
    values, stamps = read_csv(path, features, times=timed)
    seconds = None if stamps is None else [_epoch(s) for s in stamps]
    return values, seconds


def _read_parquet(path: Path, features: list[str]) -> tuple[np.ndarray, list[float] | None]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(
            f"{path}: reading Parquet needs pyarrow "
            "(pip install 'edgecomp-runtime[parquet]'), or give a CSV file"
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # NOTE: pyarrow raises its own ArrowInvalid, OSError, ...
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    absent = [name for name in features if name not in table.column_names]
    if absent:
        raise InputError(
            f"{path}: lacks the artifact's feature column(s) {absent}; columns: "
            f"{table.column_names} (a wide table is needed: one column per feature)"
        )
    values = np.column_stack([table.column(f).to_numpy(zero_copy_only=False) for f in features])
    tcol = next((n for n in table.column_names if n.lower() in _TIME_NAMES), None)  # any case
    seconds = None
    if tcol is not None:
        seconds = [_epoch(t) for t in table.column(tcol).to_pylist()]
    return values.astype(np.float64), seconds


def _epoch(stamp: Any) -> float:
    if isinstance(stamp, datetime):
        stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
        return stamp.timestamp()
    return float(stamp)


def _regular_starts(times: list[float] | None, n: int, span: int, period: float) -> list[int]:
    """Window starts whose ``span`` rows are one sampling period apart (all, without times)."""
    if times is None or period <= 0:
        return list(range(max(n - span + 1, 0)))
    steps = np.isclose(np.diff(np.asarray(times, dtype=np.float64)), period)
    bad = np.concatenate([[0], np.cumsum(~steps)])  # irregular steps before each row
    return [s for s in range(n - span + 1) if bad[s + span - 1] == bad[s]]


def _predict_all(model: Any, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forecasts of the windows the runtime accepts, and the mask of accepted windows."""
    ok = np.ones(len(raw), dtype=bool)
    preds = []
    for start in range(0, len(raw), _CHUNK):
        chunk = raw[start : start + _CHUNK]
        try:
            preds.append(model.predict(chunk))
            continue
        except InputError:
            pass
        for i, window in enumerate(chunk):
            try:
                preds.append(model.predict(window)[None])
            except InputError:
                ok[start + i] = False
    if not preds:
        return np.zeros((0, model.horizon, len(model.targets)), dtype=np.float32), ok
    return np.concatenate(preds), ok


def _engine_info(model: Any) -> dict[str, Any]:
    """What ran the model: the engine and version, any fallback and why, native or not."""
    import importlib.metadata

    from edgecomp_runtime.device import normalize_arch
    from edgecomp_runtime.engines import get_engine

    target = model.manifest.get("target", {})
    engine = get_engine(model.backend)
    try:
        version = importlib.metadata.version(engine.package)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    running = model.engine
    fallback = getattr(running, "fallback_reason", None)
    notes = [f"fallback: {running.ran_on}, not {running.native} ({fallback})"] if fallback else []
    chosen = model.manifest.get("recipe", {}).get("lowering", {}).get("engine")
    if model.backend != (chosen or target.get("backend")):  # the build's measured choice
        notes.append(f"a {target.get('backend')} artifact run on {engine.module}")
    here = normalize_arch(platform.machine())
    if normalize_arch(target.get("arch") or here) != here:
        notes.append(f"a {target.get('arch')} target measured on a {here} CPU")
    info = {
        "backend": model.backend,
        "engine": getattr(running, "ran_on", None) or f"{engine.module} {version}",
        "native": not notes,
        "fallback": fallback,
        "note": "; ".join(notes) or f"the target's own engine on a {here} CPU",
    }
    routing = model.manifest.get("recipe", {}).get("lowering", {}).get("batch_routing")
    if routing and hasattr(running, "engine_for"):  # a BatchRouter: large batches elsewhere
        info["batch_routing"] = {"engine": routing["engine"], "min_batch": running.min_batch}
        info["note"] += f"; batches of {running.min_batch}+ windows on {routing['engine']}"
    return info


def artifact_info(path: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Name, target, precision, sizes on disk and sha256 of an artifact (file or folder).

    For a folder, ``file_size`` sums its files and ``sha256`` is that of its manifest.json, which
    lists the sha256 of every other file.
    """
    target = manifest.get("target", {})
    if path.is_dir():
        file_size = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
        model_size = (path / manifest["model_file"]).stat().st_size
        digest = _sha256(path / "manifest.json")
    else:
        file_size = path.stat().st_size
        with zipfile.ZipFile(path) as archive:
            model_size = archive.getinfo(manifest["model_file"]).file_size
        digest = _sha256(path)
    name = path.name[: -len(".edgepkg")] if path.name.endswith(".edgepkg") else path.name
    return {
        "name": name,
        "path": str(path),
        "target": target.get("name"),
        "backend": target.get("backend"),
        "cpu_arch": target.get("arch"),
        "precision": manifest.get("precision"),
        "arch": manifest["spec"].get("arch"),
        "file_size": file_size,
        "model_file_size": model_size,
        "sha256": digest,
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far (VmHWM; ru_maxrss where /proc is absent)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _is_pos_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
