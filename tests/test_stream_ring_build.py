"""An incremental stream over gaps, late readings and ring wraps equals predict on its window."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import edgecomp_runtime as ecr
from edgecomp.pipeline import BuildConfig
from edgecomp.workflow import build_artifact, dataset_for


@pytest.fixture(scope="module")
def exact_tcn(tmp_path_factory, traffic_path, traffic_config):
    """An exact-streaming TCN artifact (receptive field 13 within L = 16), one epoch."""
    from edgecomp.train import TrainConfig
    from edgecomp.workflow import train_checkpoint

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ring-tcn")
    config = TrainConfig(arch="tcn", hparams={"channels": 8, "dilations": [1, 2]}, epochs=1)
    checkpoint = train_checkpoint(traffic_path, traffic_config, config, root / "ckpt").path
    build = BuildConfig(precision="fp32", options={"stream": True})
    return build_artifact(str(checkpoint), traffic_path, build, root / "tcn.edgepkg").path


def test_incremental_stream_over_gaps_and_late_readings_equals_predict(exact_tcn, traffic_path):
    # setup: test-split readings; slots skipped, some sent late, a few values missing
    from edgecomp.spec import ModelSpec

    model = ecr.load(exact_tcn)
    dataset = dataset_for(ModelSpec.from_dict(model.spec), traffic_path)
    start, end = dataset.bounds["test"]
    rows, period = dataset.values[start:end].copy(), model.spec["period_s"]
    rng = np.random.default_rng(2)
    rows[rng.random(rows.shape) < 0.01] = np.nan
    skipped = set(rng.choice(np.arange(20, len(rows)), size=12, replace=False).tolist())
    late = sorted(skipped)[:4]  # these arrive three slots late
    stream = model.stream(mode="incremental")
    pairs = []
    # execute
    for i, row in enumerate(rows):
        if i not in skipped:
            y = stream.push(i * period, row)
            if y is not None:
                pairs.append((y, model.predict(stream.window)))
        for j in late:
            if i == j + 3:
                stream.push(j * period, rows[j])
    # assert
    assert stream.stats["late"] == len(late) and stream.stats["missing_slots"] > 0
    assert len(pairs) > len(rows) // 2 and stream.stats["replays"] > 1
    got, want = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-3)
    assert stream.stats["replays"] < len(pairs)  # most forecasts fed one reading, not the window
