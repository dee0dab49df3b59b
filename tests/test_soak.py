"""A short soak: RSS stays bounded over repeated predictions on real raw windows, and 8 threads
sharing one Model during a soak give the sequential outputs (benchmarks/soak.py is the long run).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import edgecomp_runtime as ecr

WARMUP = 1_000
N = 3_000
BOUND_MB = 20.0  # generous: the 100,000-prediction benchmark bounds growth at 1 MB


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no VmRSS in /proc/self/status")


@pytest.fixture(scope="module")
def model_and_windows(tmp_path_factory, traffic_checkpoints, traffic_path):
    from edgecomp.pipeline import BuildConfig
    from edgecomp.spec import ModelSpec
    from edgecomp.workflow import build_artifact, dataset_for

    out = tmp_path_factory.mktemp("soak") / "tcn.edgepkg"
    config = BuildConfig(precision="int8", calibration_windows=16)
    path = build_artifact(str(traffic_checkpoints["tcn"]), traffic_path, config, out).path
    model = ecr.load(path)
    windows = dataset_for(ModelSpec.from_dict(model.spec), traffic_path).raw_inputs("test")
    return model, windows


def test_rss_growth_after_warmup_is_bounded(model_and_windows):
    # setup: real raw windows; every other one misses a reading (the imputation path)
    model, windows = model_and_windows
    windows = windows.copy()
    windows[::2, 3, 0] = np.nan
    samples = []
    # execute
    for i in range(N):
        out = model.predict(windows[i % len(windows)])
        if i + 1 >= WARMUP and (i + 1) % 500 == 0:
            samples.append(_rss_mb())
    # assert
    assert np.isfinite(out).all() and len(samples) == 5
    assert max(samples) - min(samples) < BOUND_MB, samples


def test_eight_threads_soaking_one_model_match_sequential_outputs(model_and_windows):
    # setup
    model, windows = model_and_windows
    fixed = windows[:32]
    reference = np.stack([model.predict(w) for w in fixed])
    results: dict[int, np.ndarray] = {}

    def work(k: int) -> None:
        out = np.empty_like(reference)
        for rep in range(8):
            for j in range(len(fixed)):
                out[(j + k + rep) % len(fixed)] = model.predict(fixed[(j + k + rep) % len(fixed)])
        results[k] = out

    # execute
    pool = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    # assert
    assert sorted(results) == list(range(8))
    for out in results.values():
        np.testing.assert_array_equal(out, reference)
