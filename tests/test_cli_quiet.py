"""Quiet by default: a build prints its own lines, not the toolchains' (absl, oneDNN, failed .so
loads, deprecations); --verbose lets them through. The host-side TensorRT fallback is said once,
in one line. Builds run as the user runs them: `edgecomp` in a fresh process."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from rich.console import Console

from edgecomp.targets import get_target, list_profiles

NOISE = re.compile(
    r"absl|oneDNN|InitializeLog|Failed to load|port\.cc|_pytree|DeprecationWarning|FutureWarning|"
    r"\.py:\d+"
)


def edgecomp(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "GLOG_", "ABSL_"))}
    command = [sys.executable, "-c", "from edgecomp.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def _available(profile: str) -> bool:
    backend = list_profiles()[profile].backend
    return get_target(backend).is_available()


@pytest.mark.target
def test_arm_build_prints_no_third_party_noise(traffic_checkpoints, traffic_path, tmp_path):
    if not _available("arm64-gateway"):
        pytest.skip("the TFLite toolchain (litert-torch, ai-edge-quantizer) is not installed")
    # execute
    done = edgecomp(
        "build", str(traffic_checkpoints["tcn"]), "--data", str(traffic_path),
        "-t", "arm64-gateway", "-p", "int8", "-o", str(tmp_path / "arm.edgepkg"),
    )  # fmt: skip
    # assert
    assert done.returncode == 0, done.stderr
    noise = [line for line in done.stderr.splitlines() if NOISE.search(line)]
    assert not noise, "\n".join(noise)
    assert "arm64-gateway int8" in done.stdout


@pytest.mark.target
def test_tensorrt_fallback_said_once_without_a_source_line(
    traffic_checkpoints, traffic_path, tmp_path
):
    if not _available("jetson-orin-nano"):
        pytest.skip("the TensorRT backend's build tools are not installed")
    # execute
    done = edgecomp(
        "build", str(traffic_checkpoints["gru"]), "--data", str(traffic_path),
        "-t", "jetson-orin-nano", "-p", "fp16", "-o", str(tmp_path / "trt.edgepkg"),
    )  # fmt: skip
    # assert
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "TensorRT is not used" in line]
    assert len(said) <= 1, done.stderr
    assert not [line for line in done.stderr.splitlines() if re.search(r"\.py:\d+", line)]


def test_a_result_line_wraps_between_words_only():
    # setup: a build result on a narrow terminal
    from pathlib import Path

    from edgecomp.cli import _print_built

    class Result:
        path = Path(__file__)  # any file: its size is printed
        manifest = {
            "target": {"name": "x86-64-avx2"},
            "precision": "int8",
            "metrics": {
                "artifact": {"mae": [5.0194, 5.3744], "n_scored": 31328, "n_imputed": 12},
                "reference": {"mae": [5.0136, 5.3699]},
            },
        }

    console = Console(width=40, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    # execute
    _print_built(Result(), console)
    lines = console.export_text().splitlines()
    # assert: every number of the line is whole on one line
    text = " ".join(lines)
    for number in ("5.197", "5.192", "31,328", "+0.12"):
        assert number in text, text
        assert any(number in line for line in lines), lines


def test_bars_show_on_a_terminal_only_and_never_with_json_or_quiet(monkeypatch):
    from edgecomp import progress

    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    monkeypatch.setattr(progress, "STATE", {"quiet": False, "verbose": False, "json": False})
    on_terminal = progress.enabled()
    with progress.json_mode():
        with_json = progress.enabled()
    progress.configure(quiet=True)
    assert (on_terminal, with_json, progress.enabled()) == (True, False, False)


def test_the_build_reports_each_stage_to_its_progress_hook(
    traffic_checkpoints, traffic_path, tmp_path
):
    # setup: a hook beside the CLI's own
    from click.testing import CliRunner

    from edgecomp.cli import main
    from edgecomp.pipeline import STAGE_HOOKS

    seen = []
    STAGE_HOOKS.append(lambda name, ctx: seen.append(name))
    # execute
    try:
        result = CliRunner().invoke(
            main,
            ["build", str(traffic_checkpoints["tcn"]), "--data", str(traffic_path), "-p", "fp32",
             "-o", str(tmp_path / "a.edgepkg")],
        )  # fmt: skip
    finally:
        STAGE_HOOKS.pop()
    # assert
    assert result.exit_code == 0, result.output
    assert {"resolve", "lower", "verify", "gate", "package"} <= set(seen), seen
    assert STAGE_HOOKS == []  # the CLI removed its own hook


@pytest.mark.parametrize("where", ["group", "command"])
def test_quiet_drops_log_lines_but_keeps_the_results(traffic_path, tmp_path, where):
    from click.testing import CliRunner

    from edgecomp.cli import main

    args = ["train", str(traffic_path), "--id-col", "detector", "--value-col", "total"]
    args += ["-L", "8", "-H", "2", "--arch", "tcn", "--hparam", "channels=4", "--epochs", "1"]
    args += ["--calendar", "off", "--out-dir", str(tmp_path)]
    # execute
    quiet = CliRunner().invoke(main, ["-q", *args] if where == "group" else [*args, "--quiet"])
    loud = CliRunner().invoke(main, args)
    # assert
    assert quiet.exit_code == 0 and loud.exit_code == 0, quiet.output + loud.output
    assert "epoch 1/1" in loud.output and "epoch 1/1" not in quiet.output
    assert "tcn on test split (MAE)" in quiet.output


def test_each_ladder_rung_reaches_its_progress_hook(traffic_checkpoints, traffic_path, tmp_path):
    # setup: a budget int8 cannot meet (no increase at all), so the ladder climbs
    from click.testing import CliRunner

    from edgecomp.cli import main
    from edgecomp.ladder import RUNG_HOOKS, RUNGS

    seen = []
    RUNG_HOOKS.append(seen.append)
    # execute
    try:
        result = CliRunner().invoke(
            main,
            ["build", str(traffic_checkpoints["tcn"]), "--data", str(traffic_path), "-p", "int8",
             "--max-error-increase", "0", "-o", str(tmp_path / "a.edgepkg")],
        )  # fmt: skip
    finally:
        RUNG_HOOKS.pop()
    # assert: the rungs tried, in the ladder's order (a met budget stops the climb early)
    assert result.exit_code in (0, 3), result.output
    order = [name for name, _ in RUNGS]
    assert seen and seen == order[: len(seen)], seen
    assert RUNG_HOOKS == []
