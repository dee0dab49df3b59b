"""``edgecomp-runtime predict --input window.csv`` with a file of the wrong length (a log's last
30 rows for a 6-step model, or too few) is refused naming the file and the row count; before, the
message spoke of a [30, F] shape without naming the file. A window of L rows still predicts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecomp_runtime import load
from edgecomp_runtime.__main__ import main


def _window_csv(tmp_path, rows):
    path = tmp_path / "log.csv"
    rng = np.random.default_rng(0)
    lines = ["a,b,c"] + [f"{10 + r},{-2 + rng.normal():.3f},{100 + r}" for r in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("rows", [2, 5, 7, 30])
def test_a_window_file_of_other_than_l_rows_is_refused_by_name(
    make_artifact, capsys, tmp_path, rows
):
    # setup: the toy takes L = 6
    path = _window_csv(tmp_path, rows)
    # execute
    code = main(["predict", str(make_artifact()), "--input", str(path)])
    # assert
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (
        f"edgecomp-runtime: error: {path}: {rows} data rows; the model takes a window of its "
        "last 6 readings (input_len), oldest first"
    )


def test_a_window_file_of_l_rows_predicts(make_artifact, capsys, tmp_path):
    # setup
    artifact = make_artifact()
    path = _window_csv(tmp_path, 6)
    # execute
    code = main(["predict", str(artifact), "--input", str(path)])
    # assert
    out = capsys.readouterr().out
    assert code == 0
    window = np.loadtxt(path, delimiter=",", skiprows=1)
    np.testing.assert_allclose(
        json.loads(out)["forecast"], load(artifact).predict(window), rtol=1e-6
    )
