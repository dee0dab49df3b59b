"""Header names as spreadsheets write them: spaces around a name (' temp ') are stripped, as the
runtime reads a window's header, so the artifact's feature names match its window CSV (before,
the model was trained on ' temp ' and ``edgecomp-runtime predict`` could not find it); a name
given twice is refused naming it and both columns (before, pandas renamed the second 'temp.1'
and the runtime took the first 'temp' of a window)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edgecomp.data import DataError, load_table
from edgecomp_runtime.errors import InputError
from edgecomp_runtime.tabular import read_csv


def _write(tmp_path, header, name="h.csv", rows=30):
    t = pd.date_range("2024-01-01", periods=rows, freq="h")
    lines = [header] + [f"{x:%Y-%m-%d %H:%M},{i},{2 * i},{3 * i}" for i, x in enumerate(t)]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_spaces_around_header_names_are_stripped_on_both_sides(tmp_path):
    # setup
    path = _write(tmp_path, "time, temp ,humid , wind")
    # execute
    frame, report = load_table(path)
    values, _ = read_csv(path, report.columns)
    # assert
    assert report.columns == ["temp", "humid", "wind"]
    np.testing.assert_array_equal(values, frame.to_numpy())


@pytest.mark.parametrize(("header", "twice", "where"), [
    ("time,temp,humid,temp", "temp", "columns 2 and 4"),
    ("time, temp,humid,temp ", "temp", "columns 2 and 4"),
    ("time,a,a,b", "a", "columns 2 and 3"),
])  # fmt: skip
def test_a_header_name_given_twice_is_refused(tmp_path, header, twice, where):
    # setup
    path = _write(tmp_path, header)
    # execute / assert
    with pytest.raises(DataError) as info:
        load_table(path)
    assert (
        str(info.value) == f"{path}: the header names column '{twice}' twice ({where}); rename one"
    )


def test_the_runtime_refuses_a_window_with_a_feature_column_twice(tmp_path):
    path = _write(tmp_path, "time,temp,humid,temp")
    with pytest.raises(
        InputError, match=r"h\.csv: the CSV header names the feature column 'temp' twice"
    ):
        read_csv(path, ["temp", "humid"])


def test_blank_headers_keep_pandas_names(tmp_path):
    # setup: a saved row index (blank header) is still told apart
    path = tmp_path / "idx.csv"
    t = pd.date_range("2024-01-01", periods=30, freq="h")
    pd.DataFrame({"time": t, "v": np.arange(30.0) * 1.5}).to_csv(path)
    # execute
    _, report = load_table(path)
    # assert
    assert report.columns == ["v"] and any("row index" in n for n in report.notes)


@pytest.mark.parametrize(("sep", "end"), [(",", "\n"), (";", "\r\n"), ("\t", "\n")])
def test_a_delimiter_ending_every_line_adds_no_column(tmp_path, sep, end):
    # setup: before, refused as an empty column 'Unnamed: 3' to --exclude
    t = pd.date_range("2024-01-01", periods=30, freq="h")
    lines = [sep.join(["time", "a", "b", ""])]
    lines += [sep.join([f"{x:%Y-%m-%d %H:%M}", str(i), str(i % 5), ""]) for i, x in enumerate(t)]
    path = tmp_path / "trail.csv"
    path.write_text(end.join(lines) + end)
    # execute
    frame, report = load_table(path)
    # assert
    assert report.columns == ["a", "b"]
    assert "skipped 1 column(s) with no header and no value (a trailing delimiter?)" in report.notes


def test_a_blank_header_over_values_is_still_a_value_column_or_an_index(tmp_path):
    # setup: a blank header over float values is data (named as pandas names it)
    t = pd.date_range("2024-01-01", periods=30, freq="h")
    path = tmp_path / "blank.csv"
    lines = ["time,a,"] + [f"{x:%Y-%m-%d %H:%M},{i},{i * 0.5}" for i, x in enumerate(t)]
    path.write_text("\n".join(lines) + "\n")
    # execute
    _, report = load_table(path)
    # assert
    assert report.columns == ["a", "Unnamed: 2"]


@pytest.mark.parametrize("marker", ["#N/A", "#NA", "<NA>", "#N/A N/A", "1.#IND", "-1.#QNAN"])
def test_spreadsheet_missing_markers_are_missing_on_both_sides(tmp_path, marker):
    # setup: pandas reads these as missing; the runtime refused them as "not a number"
    path = _write(tmp_path, "time,a,b,c")
    lines = path.read_text().splitlines()
    cells = lines[5].split(",")
    cells[2] = marker
    lines[5] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    # execute
    frame, _ = load_table(path)
    values, _ = read_csv(path, ["a", "b", "c"])
    # assert
    assert np.isnan(values[4, 1]) and np.isnan(frame.iloc[4, 1])
    np.testing.assert_array_equal(values, frame.to_numpy())


@pytest.mark.parametrize("cell", ["1_000", "\u0661\u0662"])
def test_numbers_python_reads_but_pandas_does_not_are_refused_on_both_sides(tmp_path, cell):
    # setup: float() reads '1_000' as 1000 and Arabic-Indic digits; the compiler refuses both
    path = _write(tmp_path, "time,a,b,c")
    lines = path.read_text().splitlines()
    cells = lines[3].split(",")
    cells[1] = cell
    lines[3] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # execute / assert
    with pytest.raises(DataError, match="column 'a' has non-numeric value"):
        load_table(path)
    with pytest.raises(InputError, match="column 'a', row 3: not a number or a flag"):
        read_csv(path, ["a", "b", "c"])


def test_a_missing_value_column_with_a_comma_is_named_whole(tmp_path):
    # setup: the model's value column 'pressure, hPa'; this file calls it 'pressure'
    path = tmp_path / "p.csv"
    t = pd.date_range("2024-01-01", periods=30, freq="h")
    pd.DataFrame({"time": t, "pressure": np.arange(30.0), "temp": 1.0 + np.arange(30)}).to_csv(
        path, index=False
    )
    # execute / assert: before, it named only the part 'hPa'
    with pytest.raises(DataError, match=r"value column\(s\) \['pressure, hPa'\] not found"):
        load_table(path, value_cols=["temp", "pressure, hPa"])
    frame, _ = load_table(path, value_cols=["temp,pressure"])  # a comma-separated flag still splits
    assert list(frame.columns) == ["temp", "pressure"]


@pytest.mark.parametrize(
    "preamble",
    [["# Station: JFK", "# exported 2024-01-05"], ["Weather export", ""], ["", "#", "Logger 7"]],
)
def test_lines_above_the_header_are_skipped_on_both_sides(tmp_path, preamble):
    # setup: a logger's metadata above its table; before, "Error tokenizing data" or a header
    # read from the title line
    plain = _write(tmp_path, "time,a,b,c", name="plain.csv")
    path = tmp_path / "meta.csv"
    path.write_text("\n".join(preamble) + "\n" + plain.read_text())
    # execute
    frame, report = load_table(path)
    expected, _ = load_table(plain)
    values, times = read_csv(path, ["a", "b", "c"], times=True)
    # assert
    pd.testing.assert_frame_equal(frame, expected)
    assert f"skipped {len(preamble)} line(s) above the header" in report.notes
    np.testing.assert_array_equal(values, expected.to_numpy())
    assert times[0] == expected.index[0]
