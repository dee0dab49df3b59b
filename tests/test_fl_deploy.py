"""A real Flower deployment on loopback: a SuperLink and two SuperNodes as separate processes.

Marked slow: every Flower message starts a fresh ClientApp process (torch and edgecomp imported
anew), so even one round takes about a minute on a shared 2-core machine. The same run from a
shell: scripts/fl-deploy-check.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecomp.data import DataConfig
from edgecomp.fl.config import FLConfig
from edgecomp.fl.deploy import LocalDeployment, detached_helpers
from edgecomp.fl.sites import split_by_site
from edgecomp.train import TrainConfig

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
WEATHER = ROOT / "examples" / "data" / "nyc_airports_weather_2013_hourly.csv.gz"


def _train_rows(path: Path, data: DataConfig) -> int:
    from edgecomp.data import prepare

    start, end = prepare(path, data).bounds["train"]
    return end - start


def test_superlink_and_two_supernodes_train_one_round(tmp_path):
    from edgecomp.checkpoint import load_checkpoint

    # setup: two airports, each SuperNode given only its own file
    sites = split_by_site(WEATHER, "origin", tmp_path / "sites", sites=("EWR", "LGA"), max_rows=480)
    config = FLConfig(
        data=DataConfig(input_len=12, horizon=3, features=("temp", "dewp", "pressure")),
        train=TrainConfig(hparams={"hidden": 8, "layers": 1}, epochs=1),
        rounds=1,
        out=str(tmp_path / "global"),
        timeout=120,
    )
    # execute
    with LocalDeployment([str(p) for p in sites.values()], tmp_path / "work") as deployment:
        summary = deployment.run(config)
    # assert: both nodes trained and validated; the checkpoint loads
    (round_1,) = summary["rounds"]
    assert round_1["clients"] == 2 and round_1["up_bytes"] == round_1["down_bytes"]
    assert len(round_1["evaluate"]["val-mae"]) == 3
    expected = [_train_rows(p, config.data) for p in sites.values()]
    assert sorted(summary["site_train_rows"]) == sorted(expected)
    assert load_checkpoint(config.out).spec.targets == ["temp", "dewp", "pressure"]
    # assert: no process left behind, Flower's detached helpers included
    assert all(p.returncode is not None for p in deployment.processes)
    pids = {p.pid for p in deployment.processes}
    assert detached_helpers(pids, set(deployment.addresses)) == []
