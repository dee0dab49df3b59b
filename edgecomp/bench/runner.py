"""Benchmark an artifact through the runtime: latency, throughput, size, memory, load, accuracy.

Everything is measured the way a gateway runs the artifact: ``edgecomp_runtime.load`` and
``Model.predict`` on raw windows (imputation and scaling included). Engine-only time
(``Model.run_scaled`` on already scaled windows) is measured at the same batch sizes so the
preprocessing overhead shows. Memory is measured in a fresh Python process that imports only the
runtime, and that process checks it never imported torch.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import edgecomp_runtime
from edgecomp.bench.host import host_info
from edgecomp_runtime.bench import artifact_info as runtime_artifact_info
from edgecomp_runtime.bench import latency_stats, measure  # one timing loop, both benches

__all__ = [
    "BenchError",
    "artifact_info",
    "bench_artifact",
    "engine_info",
    "latency_stats",
    "measure",
    "recipe_summary",
]

SCHEMA = "edgecomp-bench"
SCHEMA_VERSION = 1
_CHUNK = 256  # windows per predict call when scoring a split
_CHILD_REPEATS = 3  # predict calls per batch size in the memory child
_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}

_MEMORY_METHOD = (
    "peak RSS so far at each step of a fresh process: VmHWM from /proc/self/status where it "
    "exists (on Linux ru_maxrss keeps the parent's peak across fork+exec; it is reported as "
    "ru_maxrss_mb), else ru_maxrss"
)
# Runs in a fresh interpreter: imports the runtime only, never edgecomp or torch.
_CHILD = r"""
import json, resource, sys, time
def ru_maxrss_mb():
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 2**10
def peak_mb():
    try:
        with open("/proc/self/status") as fh:
            hwm = [line.split()[1] for line in fh if line.startswith("VmHWM:")]
        return int(hwm[0]) / 2**10
    except (OSError, IndexError, ValueError):
        return ru_maxrss_mb()
args = json.loads(sys.argv[1])
out = {"baseline_rss_mb": peak_mb()}
t0 = time.perf_counter_ns()
import edgecomp_runtime
for backend, engine in args["engines"].items():  # build-host engines (ExecuTorch needs torch)
    edgecomp_runtime.engines.register_engine(backend, engine)
out["import_ms"] = (time.perf_counter_ns() - t0) / 1e6
out["rss_after_import_mb"] = peak_mb()
t0 = time.perf_counter_ns()
model = edgecomp_runtime.load(args["path"], threads=args["threads"])
out["cold_load_ms"] = (time.perf_counter_ns() - t0) / 1e6
out["rss_after_load_mb"] = peak_mb()
import numpy as np
spec = model.manifest["spec"]
mean = np.asarray(spec["scaler"]["mean"], dtype=np.float32)
std = np.asarray(spec["scaler"]["std"], dtype=np.float32)
rng = np.random.default_rng(0)
for b in args["batch_sizes"]:
    shape = (spec["input_len"], mean.size) if b == 1 else (b, spec["input_len"], mean.size)
    x = (mean + std * rng.standard_normal(shape)).astype(np.float32)
    for _ in range(args["repeats"]):
        model.predict(x)
out["peak_rss_mb"] = peak_mb()
out["ru_maxrss_mb"] = ru_maxrss_mb()
out["torch_imported"] = "torch" in sys.modules
host_engine = model.manifest["target"]["backend"] in args["engines"]  # a build-host engine
assert host_engine or not out["torch_imported"], "edgecomp_runtime (or its engine) imported torch"
print(json.dumps(out))
"""


class BenchError(ValueError):
    """A benchmark cannot run; the message names the artifact, the argument or the step."""


def bench_artifact(
    artifact: str | Path,
    *,
    data: str | Path | None = None,
    batch_sizes: Sequence[int] = (1, 64),
    threads: int | None = 1,
    min_iters: int = 200,
    min_seconds: float = 2.0,
    warmup: int = 20,
    memory: bool = True,
    split: str = "test",
) -> dict[str, Any]:
    """Measure one artifact through ``edgecomp_runtime`` and return a JSON-ready report.

    Args:
        artifact: Path of a .edgepkg file (or an unpacked artifact folder).
        data: Optional CSV/Parquet file to window as the artifact's spec says; enables the accuracy
            section and supplies real windows for latency (else random windows from the spec).
        batch_sizes: Batch sizes to time; each gets keys ``b<size>``.
        threads: Intra-op threads for the engine (None: engine default).
        min_iters: Timed iterations per batch size, at least.
        min_seconds: Timed seconds per batch size, at least (both minimums must be met).
        warmup: Untimed iterations before each timing loop.
        memory: Measure resident memory in a fresh process.
        split: Data split scored for accuracy and used for latency windows.

    Returns:
        The report dict (schema "edgecomp-bench", version 1): host, artifact, latency,
        engine_latency, throughput, preprocess_overhead, memory, load_ms, accuracy, engine.

    Raises:
        FileNotFoundError: The artifact or data file does not exist.
        BenchError: An argument is out of range or the memory child failed.
    """
    path = _check_args(artifact, data, batch_sizes, min_iters, min_seconds, warmup)
    from edgecomp.progress import native_quiet

    with native_quiet():  # LiteRT's first interpreter says "INFO: Created ... XNNPACK delegate"
        model = edgecomp_runtime.load(path, threads=threads)  # first load: the engine import
    load_ms = _timed_load(path, threads)
    accuracy, raw, scaled = None, None, None
    if data is not None:
        accuracy, raw, scaled = _score(model, Path(data), split)
    if raw is None or len(raw) == 0:
        raw, scaled = _random_windows(model.manifest["spec"], max(batch_sizes))
    timing = _time_all(model, raw, scaled, batch_sizes, (warmup, min_iters, min_seconds))
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host_info(threads=threads),
        "runtime": _jsonable(model.info()),
        "engine": engine_info(model),
        "artifact": artifact_info(path, model.manifest),
        **timing,
        "latency_inputs": f"data:{split}" if accuracy and accuracy["n_windows"] else "random",
        "memory": _child_memory(path, batch_sizes, threads) if memory else None,
        "load_ms": load_ms,
        "accuracy": accuracy,
    }


def artifact_info(path: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The runtime bench's artifact record (name, target, precision, sizes, sha256) plus what
    was done to the model (``recipe``)."""
    return {**runtime_artifact_info(path, manifest), "recipe": recipe_summary(manifest)}


def recipe_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """What was done to the model: passes, quantization tool and steps, layers per precision.

    ``summary`` says it in one line, e.g. "int8: 1/3 layers dynamic int8; GRU fp32".
    """
    recipe = manifest.get("recipe") or {}
    quant = (recipe.get("lowering") or {}).get("quantization") or {}
    passes = [
        p.get("_type", "?") if isinstance(p, dict) else str(p) for p in recipe.get("passes") or []
    ]
    layers = manifest.get("layers") or []
    methods: dict[str, int] = {}
    for layer in layers:
        if layer.get("precision") != "fp32":
            kind = " ".join(v for v in (layer.get("method"), layer.get("precision")) if v)
            methods[kind] = methods.get(kind, 0) + 1
    float_ops = sorted({la["op_type"] for la in layers if la.get("precision") == "fp32"})
    parts = [f"{n}/{len(layers)} layers {kind}" for kind, n in methods.items()]
    if parts and float_ops:
        parts.append(" ".join(float_ops) + " fp32")
    summary = ", ".join([*passes, str(manifest.get("precision"))])
    summary += ": " + ("; ".join(parts) if parts else "not quantized")
    return {
        "summary": summary,
        "passes": passes,
        "quantization": {k: quant.get(k) for k in ("tool", "steps", "quant_format")}
        if quant
        else None,
        "layer_precisions": methods,
        "float_ops": float_ops,
    }


def engine_info(model: Any) -> dict[str, Any]:
    """Which engine measured ``model`` and whether it is the target's own engine on its CPU arch.

    ``native`` is false for a host fallback: the artifact's backend run on another engine (say a
    Jetson artifact on onnxruntime), or a target CPU architecture other than this machine's.
    """
    from edgecomp_runtime.engines import get_engine

    target = model.manifest.get("target", {})
    engine = get_engine(model.backend)
    try:
        version = importlib.metadata.version(engine.package)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    host_arch = _arch(platform.machine())
    target_arch = _arch(target.get("arch") or host_arch)
    notes = []
    # an engine that may fall back (tensorrt) says what ran (``ran_on``) and why
    running = model.engine
    fallback = getattr(running, "fallback_reason", None)
    if fallback:
        native = getattr(running, "native", target.get("backend"))
        notes.append(f"measured the fallback {running.ran_on}, not {native} ({fallback})")
    if model.backend != target.get("backend"):
        notes.append(f"host fallback: {target.get('backend')} artifact run on {engine.module}")
    if target_arch != host_arch:
        notes.append(f"host fallback: {target_arch} target measured on a {host_arch} CPU")
    return {
        "backend": model.backend,
        "engine": getattr(running, "ran_on", None) or f"{engine.module} {version}",
        "native": not notes,
        "note": "; ".join(notes) or f"the target's own engine on a {host_arch} CPU",
    }


def _arch(name: str) -> str:
    name = name.lower()
    return _ARCH_ALIASES.get(name, name)


def _check_args(
    artifact: str | Path,
    data: str | Path | None,
    batch_sizes: Sequence[int],
    min_iters: int,
    min_seconds: float,
    warmup: int,
) -> Path:
    path = Path(artifact)
    if not path.exists():
        raise FileNotFoundError(
            f"artifact not found: {path} (expected a .edgepkg file or an unpacked artifact folder)"
        )
    if data is not None and not Path(data).is_file():
        raise FileNotFoundError(f"data file not found: {data}")
    if not batch_sizes or any(not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise BenchError(f"batch_sizes must be positive integers, got {list(batch_sizes)}")
    if min_iters < 1 or min_seconds < 0 or warmup < 0:
        raise BenchError(
            f"need min_iters >= 1, min_seconds >= 0, warmup >= 0; got {min_iters}, "
            f"{min_seconds}, {warmup}"
        )
    return path


def _timed_load(path: Path, threads: int | None) -> float:
    start = time.perf_counter_ns()
    edgecomp_runtime.load(path, threads=threads)
    return (time.perf_counter_ns() - start) / 1e6


def _time_all(
    model: Any,
    raw: np.ndarray,
    scaled: np.ndarray,
    batch_sizes: Sequence[int],
    loop: tuple[int, int, float],
) -> dict[str, dict[str, Any]]:
    """Latency of predict (raw) and run_scaled (engine only) per batch size, plus throughput."""
    warmup, min_iters, min_seconds = loop
    out: dict[str, dict[str, Any]] = {
        "latency": {},
        "engine_latency": {},
        "throughput": {},
        "preprocess_overhead": {},
    }
    for b in batch_sizes:
        x_raw = _batch(raw, b)
        x_scaled = _batch(scaled, b)[None] if b == 1 else _batch(scaled, b)
        key = f"b{b}"
        run = latency_stats(
            measure(
                lambda x=x_raw: model.predict(x),
                warmup=warmup,
                min_iters=min_iters,
                min_seconds=min_seconds,
            )
        )
        eng = latency_stats(
            measure(
                lambda x=x_scaled: model.run_scaled(x),
                warmup=warmup,
                min_iters=min_iters,
                min_seconds=min_seconds,
            )
        )
        out["latency"][key], out["engine_latency"][key] = run, eng
        out["throughput"][key] = b * 1e3 / run["mean_ms"]
        extra = run["p50_ms"] - eng["p50_ms"]
        out["preprocess_overhead"][key] = {"p50_ms": extra, "pct": 100 * extra / run["p50_ms"]}
    return out


def _batch(pool: np.ndarray, b: int) -> np.ndarray:
    """``b`` windows from ``pool`` (cycled when short); a single [L, F] window when b == 1."""
    x = np.ascontiguousarray(np.resize(pool, (b, *pool.shape[1:])), dtype=np.float32)
    return x[0] if b == 1 else x


def _random_windows(spec: dict[str, Any], n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` raw windows drawn around the training mean with its spread, and their scaled form."""
    mean = np.asarray(spec["scaler"]["mean"], dtype=np.float32)
    std = np.asarray(spec["scaler"]["std"], dtype=np.float32)
    scaled = np.random.default_rng(0).standard_normal((n, spec["input_len"], mean.size))
    scaled = scaled.astype(np.float32)
    return (mean + std * scaled).astype(np.float32), scaled


def _score(model: Any, data: Path, split: str) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Accuracy on ``split`` of ``data`` plus the accepted raw windows and their scaled form.

    The main figures use the windows as the build verified them (gaps filled along the whole
    series), so their change against the manifest's fp32 reference is the compression's alone.
    ``gateway`` repeats the measurement on the raw windows with their missing readings, filled
    (or refused) by the runtime's own per-window imputation, as a gateway would see them.
    """
    from edgecomp.data import config_from_spec, prepare
    from edgecomp.data.prep import warn_if_other_source
    from edgecomp.metrics import horizon_metrics, observed_targets

    spec = model.manifest["spec"]
    dataset = prepare(data, config_from_spec(spec))
    warn_if_other_source(dataset, spec)
    filled = dataset.raw_inputs(split, imputed=True)
    truth = dataset.raw_targets(split)
    observed = observed_targets(dataset, split)  # imputed truth is never scored
    pred, ok = _predict_all(model, filled)
    manifest_metrics = model.manifest.get("metrics") or {}
    accuracy = _accuracy(truth[ok], pred, manifest_metrics, split, len(filled), observed[ok])
    accuracy["data"] = str(data)
    raw = dataset.raw_inputs(split, imputed=False)
    gateway_pred, gateway_ok = _predict_all(model, raw)
    accuracy["gateway"] = {
        "n_windows": int(gateway_ok.sum()),
        "n_refused": int((~gateway_ok).sum()),
        "n_with_missing": int(np.isnan(raw).any(axis=(1, 2)).sum()),
        **(
            horizon_metrics(truth[gateway_ok], gateway_pred, observed=observed[gateway_ok])
            if gateway_ok.any()
            else {}
        ),
    }
    mean = np.asarray(spec["scaler"]["mean"], dtype=np.float32)
    std = np.asarray(spec["scaler"]["std"], dtype=np.float32)
    return accuracy, filled[ok], ((filled[ok] - mean) / std).astype(np.float32)


def _predict_all(model: Any, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forecasts for every window the runtime accepts, and the boolean mask of accepted windows.

    Chunks go through ``predict`` whole; a chunk the runtime refuses (too many missing values in
    some window) is retried window by window so only the refused windows are left out.
    """
    ok = np.ones(len(raw), dtype=bool)
    preds = []
    for start in range(0, len(raw), _CHUNK):
        chunk = raw[start : start + _CHUNK]
        try:
            preds.append(model.predict(chunk))
            continue
        except edgecomp_runtime.InputError:
            pass
        for i, window in enumerate(chunk):
            try:
                preds.append(model.predict(window)[None])
            except edgecomp_runtime.InputError:
                ok[start + i] = False
    if not preds:
        shape = (0, model.manifest["spec"]["horizon"], len(model.manifest["spec"]["targets"]))
        return np.zeros(shape, dtype=np.float32), ok
    return np.concatenate(preds), ok


def _accuracy(
    truth: np.ndarray,
    pred: np.ndarray,
    metrics: dict[str, Any],
    split: str,
    n_total: int,
    observed: np.ndarray | None = None,
) -> dict[str, Any]:
    """Per-horizon errors of the artifact on observed values, the manifest's fp32 reference, and
    their differences."""
    from edgecomp.metrics import ERROR_KEYS, horizon_metrics

    if len(pred) == 0:
        raise BenchError(f"the runtime refused all {n_total} windows of the {split} split")
    artifact = horizon_metrics(truth, pred, observed=observed)
    reference = metrics.get("reference")
    out: dict[str, Any] = {
        "split": split,
        "n_windows": int(len(pred)),
        "n_refused": int(n_total - len(pred)),
        "artifact": artifact,
        "reference": reference,
        "reference_split": metrics.get("split"),
        "reference_n_windows": metrics.get("n_windows"),
    }
    out["comparable"] = (
        reference is not None
        and metrics.get("split") == split
        and metrics.get("n_windows") == len(pred)
    )
    for key in ERROR_KEYS:
        values = artifact[key]
        ref = reference.get(key) if reference else None
        out[f"delta_{key}"] = _deltas(values, ref)
        out[f"delta_{key}_pct"] = _deltas(values, ref, pct=True)
    return out


def _deltas(values: list, ref: list | None, *, pct: bool = False) -> list | None:
    """Per horizon: artifact - reference, or that as % of the reference.

    A step is None where either value is None (an undefined MAPE) or, for %, the reference is 0.
    """
    if ref is None or len(ref) != len(values):
        return None
    out = []
    for a, r in zip(values, ref, strict=True):
        if a is None or r is None or (pct and r == 0):
            out.append(None)
        else:
            out.append(100 * (a - r) / r if pct else a - r)
    return out


def _child_memory(path: Path, batch_sizes: Sequence[int], threads: int | None) -> dict[str, Any]:
    """Resident memory of a fresh process that imports the runtime, loads and predicts.

    ``artifact_rss_mb`` is peak minus after-import: what loading (the engine library included)
    and predicting at every batch size added.
    """
    args = {
        "path": str(path.resolve()),
        "batch_sizes": list(batch_sizes),
        "threads": threads,
        "repeats": _CHILD_REPEATS,
        "engines": _registered_engines(),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"{path}: memory measurement process failed: {last}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["artifact_rss_mb"] = out["peak_rss_mb"] - out["rss_after_import_mb"]
    out["method"] = _MEMORY_METHOD
    return out


def _registered_engines() -> dict[str, str]:
    """Engines this process registered with the runtime (edgecomp_runtime.engines.REGISTERED)."""
    from edgecomp_runtime.engines import REGISTERED

    return dict(REGISTERED)


def _jsonable(value: Any) -> Any:
    """``value`` round-tripped through JSON (unknown types become strings)."""
    return json.loads(json.dumps(value, default=str))
