"""LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." (written by native code on
file descriptor 2, past every log-level variable) is dropped where edgecomp loads an artifact to
bench or report it, unless --verbose; other lines written there meanwhile still reach stderr."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edgecomp.targets import get_target, list_profiles

INFO = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."

_WRITER = r"""
import os, sys
from edgecomp import progress
progress.configure(verbose=sys.argv[1] == "verbose")
with progress.native_quiet():
    os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
    os.write(2, b"ERROR: something native went wrong\n")
os.write(2, b"after\n")
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "GLOG_", "ABSL_"))}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.mark.parametrize("mode", ["quiet", "verbose"])
def test_native_quiet_drops_the_delegate_line_only(mode):
    # execute: native-level writes (fd 2) inside and after the block
    done = _run("-c", _WRITER, mode)
    # assert: the error line stays, in order; the INFO line goes unless verbose
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[-2:] == ["ERROR: something native went wrong", "after"]
    assert (INFO in lines) == (mode == "verbose")


@pytest.mark.target
def test_bench_of_an_arm_artifact_prints_no_delegate_line(
    traffic_checkpoints, traffic_path, tmp_path
):
    if not get_target(list_profiles()["arm64-gateway"].backend).is_available():
        pytest.skip("the TFLite toolchain (litert-torch, ai-edge-quantizer) is not installed")
    # setup
    cli = ("-c", "from edgecomp.cli import main; main()")
    artifact = tmp_path / "arm.edgepkg"
    built = _run(
        *cli, "build", str(traffic_checkpoints["tcn"]), "--data", str(traffic_path),
        "-t", "arm64-gateway", "-p", "fp32", "-o", str(artifact),
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    bench = (*cli, "bench", str(artifact), "--batch", "1", "--out-dir", str(tmp_path / "b"))
    # execute
    quiet, verbose = _run(*bench), _run(*bench, "-v")
    # assert: LiteRT created its delegate both times; only --verbose shows the line
    assert quiet.returncode == 0 and verbose.returncode == 0, quiet.stderr + verbose.stderr
    assert INFO not in quiet.stderr + quiet.stdout
    assert INFO in verbose.stderr
