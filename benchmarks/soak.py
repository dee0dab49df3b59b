"""Soak: RSS stays flat over many predictions, and 8 threads sharing one Model agree with 1.

    .venv/bin/python benchmarks/soak.py                      # build TCN int8 of the traffic ckpt
    .venv/bin/python benchmarks/soak.py --artifact a.edgepkg -n 100000

Bound: "flat" means RSS max - min after the warm-up is at most 2 MB and the least-squares slope
over the second half of the run is at most 0.05 MB per 10k predictions (the allocator settles
over the first tens of thousands of calls; a leak keeps climbing). Writes benchmarks/out/soak.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "examples/traffic/out/checkpoints/tcn"
DATA = ROOT / "examples/data/odot_detector_counts_15min.parquet"
OUT = ROOT / "benchmarks/out/soak.json"
WARMUP = 1_000
EVERY = 1_000
FLAT_MB = 2.0
FLAT_SLOPE = 0.05  # MB per 10k predictions, second half
THREADS = 8


def rss_mb() -> float:
    """Resident set size of this process in MB, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def build_default(dest: Path) -> Path:
    """Build the TCN int8 artifact of the trained traffic checkpoint."""
    import torch

    from edgecomp.pipeline import BuildConfig
    from edgecomp.workflow import build_artifact

    torch.set_num_threads(1)
    return build_artifact(str(CHECKPOINT), DATA, BuildConfig(precision="int8"), dest).path


def test_windows(model, data: Path) -> np.ndarray:
    """Raw test-split windows (NaN where missing), as a gateway sees them."""
    from edgecomp.spec import ModelSpec
    from edgecomp.workflow import dataset_for

    spec = ModelSpec.from_dict(model.spec)
    return dataset_for(spec, data).raw_inputs("test")


def soak(model, windows: np.ndarray, n: int) -> dict:
    """n batch-1 predictions cycling through windows; RSS sampled every EVERY after WARMUP."""
    samples: list[tuple[int, float]] = []
    start_rss = rss_mb()
    t0 = time.perf_counter()
    for i in range(n):
        model.predict(windows[i % len(windows)])
        if i + 1 >= WARMUP and (i + 1) % EVERY == 0:
            samples.append((i + 1, rss_mb()))
    elapsed = time.perf_counter() - t0
    counts = np.array([c for c, _ in samples], dtype=float)
    values = np.array([v for _, v in samples])
    slope, late = (
        _slope(counts, values),
        _slope(counts[len(counts) // 2 :], values[len(values) // 2 :]),
    )
    growth = float(values.max() - values.min()) if len(values) else 0.0
    return {
        "predictions": n,
        "rss_start_mb": round(start_rss, 2),
        "rss_end_mb": round(rss_mb(), 2),
        "rss_after_warmup_max_minus_min_mb": round(growth, 3),
        "slope_mb_per_10k": round(slope, 4),
        "second_half_slope_mb_per_10k": round(late, 4),
        "predictions_per_s": round(n / elapsed, 1),
        "flat": growth <= FLAT_MB and late <= FLAT_SLOPE,
    }


def _slope(counts: np.ndarray, values: np.ndarray) -> float:
    """Least-squares RSS slope in MB per 10k predictions."""
    return float(np.polyfit(counts, values, 1)[0] * 10_000) if len(counts) > 1 else 0.0


def threaded(model, windows: np.ndarray, n: int) -> dict:
    """n predictions split over THREADS threads sharing model; outputs of a fixed set compared."""
    fixed = windows[:64]
    reference = [model.predict(w) for w in fixed]
    mismatches = []
    per_thread = n // THREADS

    def work(k: int) -> None:
        for i in range(per_thread):
            j = (i + k) % len(fixed)
            if not np.array_equal(model.predict(fixed[j]), reference[j]):
                mismatches.append((k, j))

    t0 = time.perf_counter()
    pool = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - t0
    return {
        "threads": THREADS,
        "predictions": per_thread * THREADS,
        "predictions_per_s": round(per_thread * THREADS / elapsed, 1),
        "mismatches": len(mismatches),
        "identical": not mismatches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--artifact", type=Path, help="artifact to soak (default: build TCN int8)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("-n", type=int, default=100_000, help="predictions (default 100000)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    import edgecomp_runtime as ecr

    with tempfile.TemporaryDirectory() as tmp:
        path = args.artifact or build_default(Path(tmp) / "tcn-int8.edgepkg")
        model = ecr.load(path)
    windows = test_windows(model, args.data)
    result = {
        "artifact": str(args.artifact or "tcn-int8 (built from examples/traffic checkpoint)"),
        "windows": len(windows),
        "bound": f"flat = RSS max - min after {WARMUP} warm-up predictions <= {FLAT_MB} MB "
        f"and second-half slope <= {FLAT_SLOPE} MB/10k",
        "sequential": soak(model, windows, args.n),
        "threaded": threaded(model, windows, args.n),
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
