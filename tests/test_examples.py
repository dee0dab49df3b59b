"""Smoke tests: each example runs end to end in --quick mode (tiny model, 2 epochs)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.target, pytest.mark.slow]


@pytest.mark.parametrize(
    ("name", "arch"),
    [("traffic", "tcn"), ("traffic", "stgnn"), ("weather", "gru"), ("finance", "lstm")],
)
def test_example_runs_end_to_end(name, arch, tmp_path):
    # execute
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / name / "run.py"),
            "--quick",
            "--archs",
            arch,
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    # assert
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    evaluation = summary["models"][arch]
    assert "last_value" in evaluation["baselines"]
    assert [row["precision"] for row in summary["bench"]] == ["fp32", "int8"]
    report = (tmp_path / "bench" / "report.md").read_text()
    assert f"{name}-{arch}-fp32" in report and f"{name}-{arch}-int8" in report
    assert len(list((tmp_path / "artifacts").glob("*.edgepkg"))) == 2
    html = (tmp_path / "report" / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "http" not in html
    assert (tmp_path / "adjacency.png").exists() == (arch == "stgnn")


def test_bikeshare_example_runs_end_to_end(tmp_path):
    # execute: 8 stations, the graph model only, tiny and 2 epochs
    command = [sys.executable, str(ROOT / "examples" / "bikeshare" / "run.py"), "--quick"]
    command += ["--stations", "8", "--archs", "stgnn", "--out", str(tmp_path)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    # assert: per-horizon table against the baselines, both artifacts, the adjacency drawn
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stations"] == 8 and summary["graph"]["adjacency"] == "both"
    assert {"last_value", "seasonal_naive_1w"} <= set(summary["models"]["stgnn"]["baselines"])
    assert [Path(row["artifact"]).name for row in summary["bench"]] == [
        "bikeshare-stgnn-fp32.edgepkg",
        "bikeshare-stgnn-int8.edgepkg",
    ]
    assert "| stgnn |" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "adjacency.png").read_bytes()[:4] == b"\x89PNG"
