"""Python 3.10 (JetPack 6) to 3.13: what differs between them, checked on whichever runs this.

``make test`` runs tests/runtime in runtime-only environments on Python 3.10 and 3.13 besides the
main one; these tests pin what used to break there (datetime.UTC, ISO timestamps ending in Z).
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

import edgecomp_runtime as ecr

FIXTURES = Path(__file__).resolve().parent / "fixtures"
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
PERIOD = 900.0  # the toy artifact's spec.period_s


def test_every_runtime_module_imports():
    # engines import their package lazily, so every module imports with numpy alone
    names = [m.name for m in pkgutil.walk_packages(ecr.__path__, "edgecomp_runtime.")]
    for name in names:
        importlib.import_module(name)
    assert "edgecomp_runtime.engines.onnxruntime" in names


@pytest.mark.parametrize("suffix", ["Z", "z", "+00:00"])
def test_iso_timestamps_in_utc_are_read_on_every_python(make_artifact, toy, suffix):
    # setup
    model = ecr.load(make_artifact())
    rows = toy.window(seed=3)
    stream = model.stream()
    # execute: readings stamped "2025-01-01T00:15:00Z" and so on
    for i, row in enumerate(rows):
        stamp = datetime.fromtimestamp(T0.timestamp() + i * PERIOD, tz=timezone.utc)
        forecast = stream.push(stamp.replace(tzinfo=None).isoformat() + suffix, row)
    # assert: a full window in consecutive slots gives exactly predict
    assert stream.slot_time() == T0.timestamp() + (len(rows) - 1) * PERIOD
    assert np.array_equal(forecast, model.predict(rows))


def test_a_timestamp_that_is_not_iso_is_refused_in_one_line(make_artifact, toy):
    stream = ecr.load(make_artifact()).stream()
    with pytest.raises(ecr.InputError, match="not ISO 8601"):
        stream.push("2025-01-01 at noon", toy.window(seed=3)[0])


def test_the_supported_range_matches_pyproject():
    # the runtime says 3.10+, and this interpreter is one the Makefile tests
    text = (FIXTURES.parents[2] / "runtime" / "pyproject.toml").read_text()
    assert 'requires-python = ">=3.10"' in text
    assert sys.version_info >= (3, 10)


def test_the_shipped_toy_model_is_the_conftest_toy(toy):
    # fixtures/toy.onnx stands in for Toy.onnx_bytes() where onnx is not installed
    pytest.importorskip("onnx", reason="rebuilding the toy needs onnx.helper")
    assert (FIXTURES / "toy.onnx").read_bytes() == toy.onnx_bytes()


def test_predict_cli_runs_on_this_python(tmp_path, make_artifact, toy):
    # setup: a window as CSV with the feature names in its header
    path = tmp_path / "window.csv"
    rows = toy.window(seed=4)
    path.write_text(
        ",".join(toy.features) + "\n" + "\n".join(",".join(f"{v:.6f}" for v in r) for r in rows)
    )
    # execute: the console entry point in a fresh interpreter
    command = ["predict", str(make_artifact()), "--input", str(path)]
    proc = subprocess.run(
        [sys.executable, "-m", "edgecomp_runtime", *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # assert
    assert proc.returncode == 0, proc.stderr
    assert '"forecast"' in proc.stdout
