"""Smoke test: examples/gateway replays real readings through a real broker and `serve`."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers.broker import find_mosquitto

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        find_mosquitto() is None,
        reason="the mosquitto binary is not installed (apt-get install mosquitto)",
    ),
]


def test_gateway_example_serves_forecasts_over_mqtt(tmp_path):
    pytest.importorskip("paho.mqtt.client", reason="serve needs paho-mqtt (runtime[serve])")
    # execute
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples/gateway/run.py"), "--quick", "--speed", "0"]
        + ["--limit", "100", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # assert
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["readings"] == 100 and summary["health"]["stream"]["forecasts"] == 100 - 48 + 1
    assert summary["stream"]["mode"] == "incremental"
    assert summary["n_forecasts"] == 100 - 48 + 1 - 8
    assert np.isfinite(summary["served_mae"]).all() and len(summary["served_mae"]) == 8
    assert "served" in proc.stdout and "truth" in proc.stdout
