"""The edgecomp-runtime command line: info, predict, one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgecomp_runtime import load
from edgecomp_runtime.__main__ import main


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_info_prints_the_summary_as_json(make_artifact, capsys, toy):
    code, out, _ = _run(capsys, "info", make_artifact())
    assert code == 0
    info = json.loads(out)
    assert info["features"] == list(toy.features)
    assert info["horizon"] == toy.horizon and info["backend"] == "onnx"


@pytest.mark.parametrize("suffix", [".json", ".npy", ".csv"])
def test_predict_reads_each_input_format(make_artifact, capsys, tmp_path, toy, suffix):
    # setup
    artifact = make_artifact()
    window = np.round(toy.window(), 3)
    path = tmp_path / f"window{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(window.tolist()))
    elif suffix == ".npy":
        np.save(path, window)
    else:
        np.savetxt(path, window, delimiter=",")
    # execute
    code, out, _ = _run(capsys, "predict", artifact, "--input", path, "--threads", "1")
    # assert
    assert code == 0
    result = json.loads(out)
    assert result["targets"] == list(toy.targets) and result["horizon"] == toy.horizon
    np.testing.assert_allclose(result["forecast"], load(artifact).predict(window), rtol=1e-6)


def test_predict_csv_header_selects_columns_by_name_and_empty_cells_are_missing(
    make_artifact, capsys, tmp_path, toy
):
    # setup: columns reordered, an extra timestamp column, one empty cell
    window = np.round(toy.window(), 3)
    lines = ["timestamp,c,a,b"]
    for step, (a, b, c) in enumerate(window):
        lines.append(f"t{step},{c},{a},{'' if step == 2 else b}")
    path = tmp_path / "window.csv"
    path.write_text("\n".join(lines) + "\n")
    expected_window = window.copy()
    expected_window[2, 1] = np.nan
    artifact = make_artifact()
    # execute
    code, out, _ = _run(capsys, "predict", artifact, "--input", path)
    # assert
    assert code == 0
    expected = load(artifact).predict(expected_window)
    np.testing.assert_allclose(json.loads(out)["forecast"], expected, rtol=1e-6)


def test_csv_header_without_a_feature_column_is_refused(make_artifact, capsys, tmp_path):
    path = tmp_path / "window.csv"
    path.write_text("a,b\n1,2\n")
    code, _, err = _run(capsys, "predict", make_artifact(), "--input", path)
    assert code == 2
    assert "lacks the artifact's feature column(s) ['c']" in err


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("[[1, 2], [3, 4]]", ".json", "expected shape"),
        ("{not json", ".json", "cannot read the window"),
        ("1,2,3\n", ".txt", "unsupported input type '.txt'"),
    ],
)
def test_bad_input_files_exit_2_with_one_line(
    make_artifact, capsys, tmp_path, content, suffix, message
):
    path = tmp_path / f"window{suffix}"
    path.write_text(content)
    code, out, err = _run(capsys, "predict", make_artifact(), "--input", path)
    assert code == 2 and out == ""
    assert err.startswith("edgecomp-runtime: error:") and message in err
    assert err.count("\n") == 1


def test_bad_artifact_exits_2_with_one_line(capsys, tmp_path):
    path = tmp_path / "bad.edgepkg"
    path.write_bytes(b"nope")
    code, _, err = _run(capsys, "info", path)
    assert code == 2
    assert "not a readable zip" in err and err.count("\n") == 1


def test_python_dash_m_entry_point(make_artifact):
    result = subprocess.run(
        [sys.executable, "-m", "edgecomp_runtime", "info", str(make_artifact())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model_file"] == "model.onnx"
