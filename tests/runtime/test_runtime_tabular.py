"""Flags and CSV tables on the gateway read as the compiler reads them (issue 17 item 7)."""

from __future__ import annotations

import json
import math
from datetime import datetime

import numpy as np
import pytest

from edgecomp_runtime import load
from edgecomp_runtime.__main__ import main
from edgecomp_runtime.errors import InputDtypeError, InputError
from edgecomp_runtime.tabular import cell_value, read_csv


@pytest.mark.parametrize(
    ("cell", "value"),
    [(True, 1.0), (np.False_, 0.0), (" TRUE ", 1.0), ("false", 0.0), ("2.5", 2.5), (3, 3.0)],
)
def test_cells_read_flags_as_one_and_zero(cell, value):
    assert cell_value(cell) == value


@pytest.mark.parametrize("cell", ["", " NA ", "null", "-", "nan"])
def test_missing_markers_read_as_nan(cell):
    assert math.isnan(cell_value(cell))


def test_text_that_is_no_number_or_flag_is_refused():
    with pytest.raises(ValueError):
        cell_value("yes")


def _flag_csv(tmp_path, toy, window: np.ndarray) -> tuple:
    """A CSV with a time column, a text column and feature b written as True/False."""
    flags = window[:, 1] > np.median(window[:, 1])
    lines = ["time,note,c,a,b"]
    for step, (a, _, c) in enumerate(window):
        lines.append(f"2024-03-01T{step:02d}:00:00Z,x{step},{c},{a},{bool(flags[step])}")
    path = tmp_path / "flags.csv"
    path.write_text("\n".join(lines) + "\n")
    expected = window.copy()
    expected[:, 1] = flags.astype(float)
    return path, expected


def test_read_csv_picks_features_by_name_and_parses_times(tmp_path, toy):
    # setup
    window = np.round(toy.window(), 3)
    path, expected = _flag_csv(tmp_path, toy, window)
    # execute
    values, stamps = read_csv(path, list(toy.features), times=True)
    # assert
    np.testing.assert_array_equal(values, expected)
    assert stamps[0] == datetime(2024, 3, 1, 0) and stamps[-1].hour == toy.input_len - 1


def test_read_csv_errors_name_file_column_and_row(tmp_path, toy):
    # setup
    path = tmp_path / "bad.csv"
    path.write_text("time,a,b,c\n2024-01-01T00:00Z,1,maybe,3\n")
    # execute / assert
    with pytest.raises(InputError, match=r"bad\.csv: column 'b', row 1: not a number .*'maybe'"):
        read_csv(path, list(toy.features))
    with pytest.raises(InputError, match=r"time column 'when' not found; columns: \['time'"):
        read_csv(path, ["a"], time_col="when", times=True)


def test_compiler_and_runtime_read_the_same_flag_csv_identically(tmp_path, toy):
    from edgecomp.data import load_table

    # setup
    window = np.round(toy.window(), 3)
    path, _ = _flag_csv(tmp_path, toy, window)
    # execute
    frame, report = load_table(path)
    values, _ = read_csv(path, list(toy.features))
    # assert: the compiler skips the text column, reads b as 1/0, the runtime agrees
    assert "skipped text columns: note" in report.notes
    np.testing.assert_array_equal(frame[list(toy.features)].to_numpy(), values)


def test_predict_accepts_bool_and_object_arrays_and_dataframes(make_artifact, toy):
    pd = pytest.importorskip("pandas")
    # setup
    model = load(make_artifact())
    window = np.round(toy.window(), 3)
    window[:, 1] = window[:, 1] > np.median(window[:, 1])
    mixed = window.astype(object)
    mixed[:, 1] = [bool(v) for v in window[:, 1]]
    frame = pd.DataFrame(mixed[:, ::-1], columns=["c", "b", "a"]).assign(extra="text")
    # execute
    expected = model.predict(window)
    # assert
    np.testing.assert_array_equal(model.predict(mixed), expected)
    np.testing.assert_array_equal(model.predict(frame), expected)
    ones = model.predict(np.ones((toy.input_len, 3), dtype=bool))
    np.testing.assert_array_equal(ones, model.predict(np.ones((toy.input_len, 3))))


def test_predict_refuses_dataframes_without_the_features_and_bad_cells(make_artifact, toy):
    pd = pytest.importorskip("pandas")
    # setup
    model = load(make_artifact())
    frame = pd.DataFrame(np.ones((toy.input_len, 2)), columns=["a", "b"])
    text = np.full((toy.input_len, 3), "1.0", dtype=object)
    text[0, 0] = "many"
    # execute / assert
    with pytest.raises(InputError, match=r"DataFrame lacks feature column\(s\) \['c'\]"):
        model.predict(frame)
    with pytest.raises(InputError, match="window: could not convert string to float: 'many'"):
        model.predict(text)
    with pytest.raises(InputDtypeError, match="dtype object"):
        model.predict([[1.0, None, 2.0]] * toy.input_len)


def test_runtime_cli_reads_a_csv_with_a_bool_column(make_artifact, capsys, tmp_path, toy):
    # setup: the CSV's rows are an hour apart, the artifact's period too
    artifact = make_artifact(manifest={"spec.period_s": 3600.0})
    path, expected = _flag_csv(tmp_path, toy, np.round(toy.window(), 3))
    # execute
    code = main(["predict", str(artifact), "--input", str(path)])
    out = capsys.readouterr().out
    # assert
    assert code == 0
    np.testing.assert_allclose(json.loads(out)["forecast"], load(artifact).predict(expected))
