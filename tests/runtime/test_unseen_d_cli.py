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


def test_a_json_window_nested_too_deep_is_an_input_error(make_artifact, capsys, tmp_path):
    # setup: hostile input; before, a RecursionError traceback
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    # execute
    code = main(["predict", str(make_artifact()), "--input", str(path)])
    # assert
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith(
        f"edgecomp-runtime: error: {path}: cannot read the window (maximum recursion"
    )


def test_a_csv_cell_over_the_csv_modules_limit_is_an_input_error(make_artifact, capsys, tmp_path):
    # setup: before, a _csv.Error traceback
    path = tmp_path / "big.csv"
    path.write_text("a,b,c\n" + "1,2,3\n" * 5 + '1,2,"' + "9" * 200_000 + '"\n')
    # execute
    code = main(["predict", str(make_artifact()), "--input", str(path)])
    # assert
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (
        f"edgecomp-runtime: error: {path}: cannot read the CSV file (field larger than field "
        "limit (131072))"
    )


@pytest.mark.parametrize("sep", [",", "\t"])
def test_a_utf16_window_csv_reads(make_artifact, capsys, tmp_path, sep):
    # setup: Excel's "Unicode Text" export is UTF-16 with a byte-order mark, tab-delimited
    artifact = make_artifact()
    plain = _window_csv(tmp_path, 6)
    path = tmp_path / "unicode.csv"
    path.write_bytes(plain.read_text().replace(",", sep).encode("utf-16"))
    # execute
    code = main(["predict", str(artifact), "--input", str(path)])
    # assert
    out = capsys.readouterr().out
    assert code == 0
    window = np.loadtxt(plain, delimiter=",", skiprows=1)
    np.testing.assert_allclose(
        json.loads(out)["forecast"], load(artifact).predict(window), rtol=1e-6
    )


def test_a_json_window_with_null_for_a_missing_reading_predicts_as_nan(
    make_artifact, capsys, tmp_path, toy
):
    # setup: JSON has no NaN; null is its missing value (before: "dtype object is not a real
    # number type")
    artifact = make_artifact()
    window = np.round(toy.window(), 3)
    cells = window.tolist()
    cells[2][1] = None
    path = tmp_path / "w.json"
    path.write_text(json.dumps(cells))
    # execute
    code = main(["predict", str(artifact), "--input", str(path)])
    # assert
    out = capsys.readouterr().out
    assert code == 0
    window[2, 1] = np.nan
    np.testing.assert_allclose(
        json.loads(out)["forecast"], load(artifact).predict(window), rtol=1e-6
    )


def test_a_dataframe_with_spaces_around_column_names_predicts(make_artifact, toy):
    pd = pytest.importorskip("pandas")
    # setup: pandas keeps ' a ' from a CSV header; the CSV path strips it
    model = load(make_artifact())
    window = np.round(toy.window(), 3)
    frame = pd.DataFrame(window, columns=[f" {f} " for f in toy.features])
    # execute / assert
    np.testing.assert_allclose(model.predict(frame), model.predict(window), rtol=1e-6)
