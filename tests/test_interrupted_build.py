"""A build killed with SIGKILL at a random moment never leaves a partial artifact, and the next
build succeeds. (There is no build cache: every build starts from scratch.) SIGKILL skips the
writer's cleanup, so a ``.<name>.*.tmp`` beside the artifact may remain; it must never be read.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import edgecomp_runtime as ecr

KILLS = 3
SEED = 20261129


def _start(checkpoint: Path, data: Path, out: Path) -> subprocess.Popen:
    code = "import sys; from edgecomp.cli import main; sys.exit(main())"
    args = [str(checkpoint), "--data", str(data), "-o", str(out), "-p", "int8"]
    return subprocess.Popen(
        [sys.executable, "-c", code, "build", *args, "--calibration-windows", "16"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _complete_or_absent(out: Path) -> None:
    if out.exists():
        manifest, files = ecr.read_artifact(out)  # raises on any partial file
        assert files[manifest["model_file"]]


def _strays(folder: Path, out: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in (out.name,))


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkilled_builds_leave_no_partial_artifact(traffic_checkpoints, traffic_path, tmp_path):
    # setup: time one full build, to draw kill points inside it
    checkpoint, out = traffic_checkpoints["tcn"], tmp_path / "tcn.edgepkg"
    t0 = time.monotonic()
    first = _start(checkpoint, traffic_path, tmp_path / "timed.edgepkg")
    assert first.wait(timeout=120) == 0, first.stdout.read().decode()
    duration = time.monotonic() - t0
    rng = random.Random(SEED)
    # execute: builds into the same path, each killed at a random moment
    for _ in range(KILLS):
        proc = _start(checkpoint, traffic_path, out)
        time.sleep(rng.uniform(0.2, max(duration, 0.3)))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # assert: nothing, or a complete artifact; at most stray .tcn.edgepkg.*.tmp files
        _complete_or_absent(out)
        strays = _strays(tmp_path, out)
        assert all(n == "timed.edgepkg" or (n.startswith(".tcn.edgepkg.") and n.endswith(".tmp"))
                   for n in strays), strays  # fmt: skip
    # a later build succeeds and ignores leftover temp files (one planted, in case none was left)
    (tmp_path / ".tcn.edgepkg.planted.tmp").write_bytes(b"PK\x03\x04 partial")
    final = _start(checkpoint, traffic_path, out)
    assert final.wait(timeout=120) == 0, final.stdout.read().decode()
    manifest, _ = ecr.read_artifact(out)
    assert manifest["precision"] == "int8"
    assert (tmp_path / ".tcn.edgepkg.planted.tmp").read_bytes() == b"PK\x03\x04 partial"
