"""Files shaped unlike the shipped examples, as a new user brings them: a European CSV (';' and
decimal commas), Unix times in milliseconds, several value columns in one --value-col, a table
too short for the default window. Each reads right or is refused with a message that says what
to pass instead."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pandas as pd
import pytest

from edgecomp.data import DataConfig, DataError, load_table, prepare


def _frame(n: int = 60) -> pd.DataFrame:
    t = pd.date_range("2024-03-01", periods=n, freq="h")
    i = np.arange(n, dtype=float)
    return pd.DataFrame({"time": t, "a": i / 4, "b": 50 + np.round(np.sin(i), 2)})


def _read_both(tmp_path, name: str, options: dict) -> tuple[pd.DataFrame, tuple]:
    """``_frame()`` written as plain.csv and as ``name`` (to_csv ``options``): the plain file's
    table and what load_table gives for ``name`` (table, report)."""
    df = _frame()
    df.to_csv(tmp_path / "plain.csv", index=False)
    df.to_csv(tmp_path / name, index=False, **options)
    want, _ = load_table(tmp_path / "plain.csv")
    return want, load_table(tmp_path / name)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("semicolon.csv", {"sep": ";", "decimal": ","}),
        ("semicolon.csv.gz", {"sep": ";", "decimal": ","}),
        ("tabs.csv", {"sep": "\t", "decimal": ","}),
        ("semicolon-dot.csv", {"sep": ";"}),
        ("pipes.csv", {"sep": "|"}),
    ],
)
def test_a_csv_delimited_otherwise_reads_as_the_comma_file(tmp_path, name, options):
    # setup / execute: the same table written with ',' and with another delimiter (and decimal
    # mark), both read
    want, (got, report) = _read_both(tmp_path, name, options)
    # assert
    assert report.columns == ["a", "b"]
    pd.testing.assert_frame_equal(got, want)


def test_decimal_commas_in_a_comma_delimited_file_are_still_refused(tmp_path):
    # setup: "12,5" cannot be told from two cells here
    path = tmp_path / "ambiguous.csv"
    path.write_text('time,a\n2024-01-01 00:00,"12,5"\n2024-01-01 01:00,"13,0"\n')
    # execute / assert
    with pytest.raises(DataError, match=r"'a'.*decimal comma"):
        load_table(path)


@pytest.mark.parametrize("scale", [1, 1_000, 1_000_000, 1_000_000_000])
def test_unix_times_in_any_unit_give_the_same_grid(tmp_path, scale):
    # setup: seconds, milliseconds, microseconds, nanoseconds since 1970
    df = _frame()
    seconds = (df["time"] - pd.Timestamp("1970-01-01")) // pd.Timedelta("1s")
    df["time"] = seconds * scale
    df.to_csv(tmp_path / "epoch.csv", index=False)
    # execute
    frame, report = load_table(tmp_path / "epoch.csv")
    # assert
    assert report.period_s == 3600 and report.n_gap_steps == 0
    assert frame.index[0] == pd.Timestamp("2024-03-01") and len(frame) == 60


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        (
            "1713398400\n1713402000\n1713405600000",
            r"timestamp 56265-.* out of range \(read as Unix times in s\), data row 3",
        ),
        ("1e25\n2e25\n3e25", r"cannot parse 1e\+25 \(data row 1"),
        ("2262-04-11\n2262-04-12\n2262-04-13", r"timestamp 2262-04-12 00:00:00 out of range, data"),
        ("1500-01-01\n1500-01-02\n1500-01-03", r"timestamp 1500-01-01 00:00:00 out of range, data"),
    ],
)
def test_unix_times_out_of_range_name_the_file_and_column(tmp_path, cells, message):
    # setup: one time in milliseconds among seconds; floats beyond any unit
    path = tmp_path / "far.csv"
    path.write_text("stamp,a\n" + "".join(f"{c},1\n" for c in cells.split("\n")))
    # execute / assert: a DataError, not pandas' OutOfBoundsDatetime without the file
    with pytest.raises(DataError, match=r"far\.csv: column 'stamp': " + message):
        load_table(path, time_col="stamp")


def test_value_columns_given_comma_separated_are_split(tmp_path):
    # setup: a long table with three value columns
    t = pd.date_range("2024-01-01", periods=30, freq="h")
    rows = [(s, o, i, 2 * i, 3 * i) for i, s in enumerate(t) for o in ("X", "Y")]
    long = pd.DataFrame(rows, columns=["time", "origin", "p", "q", "r"])
    long.to_csv(tmp_path / "long.csv", index=False)
    # execute
    _, split = load_table(tmp_path / "long.csv", id_col="origin", value_cols=["p, q"])
    _, repeated = load_table(tmp_path / "long.csv", id_col="origin", value_cols=["p", "q"])
    # assert
    assert split.columns == repeated.columns == ["X_p", "X_q", "Y_p", "Y_q"]


def test_a_column_whose_name_has_a_comma_is_still_one_column(tmp_path):
    # setup
    df = _frame().rename(columns={"a": "x, y"})
    df.to_csv(tmp_path / "comma-name.csv", index=False)
    # execute
    _, report = load_table(tmp_path / "comma-name.csv", value_cols=["x, y"])
    # assert
    assert report.columns == ["x, y"]


def _suggested(message: str) -> tuple[int, int]:
    found = re.search(r"-L (\d+) -H (\d+)", message)
    assert found, message
    return int(found.group(1)), int(found.group(2))


@pytest.mark.parametrize("rows", [60, 200])
def test_a_table_too_short_for_the_window_suggests_one_that_fits(tmp_path, rows):
    # setup: 60 rows give no split 56 rows; 200 rows give a test split of 30
    _frame(rows).to_csv(tmp_path / "short.csv", index=False)
    # execute
    with pytest.raises(DataError, match="pass a shorter window") as info:
        prepare(tmp_path / "short.csv", DataConfig(input_len=48, horizon=8))
    length, horizon = _suggested(str(info.value))
    dataset = prepare(tmp_path / "short.csv", DataConfig(input_len=length, horizon=horizon))
    # assert: the suggestion windows every split
    assert length >= 2 and horizon >= 1
    assert all(len(dataset.split(s).x) > 0 for s in ("train", "val", "test"))


def test_a_table_too_short_for_any_window_says_so(tmp_path):
    # setup
    _frame(8).to_csv(tmp_path / "tiny.csv", index=False)
    # execute / assert
    with pytest.raises(DataError, match="too short to window"):
        prepare(tmp_path / "tiny.csv", DataConfig(input_len=48, horizon=8))


def test_a_gzipped_semicolon_file_is_sniffed_without_reading_it_whole(tmp_path):
    # setup: a header and one short line; the sniffer must not fail on fewer lines than it reads
    path = tmp_path / "two.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("time;a\n2024-01-01 00:00;1,5\n2024-01-01 01:00;2,5\n")
    # execute
    frame, _ = load_table(path)
    # assert
    assert frame["a"].tolist() == [1.5, 2.5]


@pytest.mark.parametrize(("freq", "grid"), [("B", "business-day"), ("D", None)])
def test_the_spec_records_a_business_day_grid(tmp_path, freq, grid):
    # setup: daily returns on weekdays only (weekends are no gaps) and on every day
    t = pd.date_range("2024-01-01", periods=120, freq=freq)
    df = pd.DataFrame({"date": t, "r": np.sin(np.arange(120.0))})
    df.to_csv(tmp_path / "daily.csv", index=False)
    # execute
    data = prepare(tmp_path / "daily.csv", DataConfig(input_len=10, horizon=3)).spec_fields()
    # assert: the runtime's stream refuses such artifacts by this field
    assert data["data"].get("grid") == grid


@pytest.mark.parametrize(
    ("fmt", "start"),
    [("%d/%m/%Y", "2024-05-01"), ("%d.%m.%Y", "2024-05-01"), ("%m/%d/%Y", "2024-01-05")],
)
def test_day_month_order_is_told_from_the_dates(tmp_path, fmt, start):
    # setup: daily values written day first (Europe) or month first (US), the first dates
    # readable either way; read as the other order they scattered over a year
    t = pd.date_range(start, periods=40, freq="D")
    df = pd.DataFrame({"date": t.strftime(fmt), "a": np.arange(40.0)})
    df.to_csv(tmp_path / "dates.csv", index=False)
    # execute
    frame, report = load_table(tmp_path / "dates.csv")
    # assert
    assert report.n_gap_steps == 0 and list(frame.index) == list(t)
    assert frame["a"].tolist() == list(range(40))


def test_dates_no_value_of_which_tells_day_from_month_are_refused(tmp_path):
    # setup
    path = tmp_path / "ambiguous.csv"
    path.write_text("date,a\n01/02/2024,1\n02/02/2024,2\n03/02/2024,3\n")
    # execute / assert
    with pytest.raises(DataError, match=r"'date': dates such as '01/02/2024' could be day/month"):
        load_table(path)


@pytest.mark.parametrize("header", ["", "index"])
def test_a_saved_row_index_is_no_feature(tmp_path, header):
    # setup: DataFrame.to_csv's default writes the index under a blank header
    df = _frame()
    if header:
        df.index.name = header
    df.to_csv(tmp_path / "indexed.csv")
    # execute
    frame, report = load_table(tmp_path / "indexed.csv")
    # assert
    assert report.columns == ["a", "b"]
    assert any("row index" in note for note in report.notes)


def test_a_blank_header_column_of_readings_is_kept(tmp_path):
    # setup: a blank header over real (non-integer) readings is a sensor without a name
    df = _frame().rename(columns={"b": ""})
    df.to_csv(tmp_path / "blank.csv", index=False)
    # execute
    _, report = load_table(tmp_path / "blank.csv")
    # assert
    assert report.columns == ["a", "Unnamed: 2"]


def test_a_windows_1252_csv_reads(tmp_path):
    # setup: station names with accents, as a spreadsheet on Windows saves them
    df = _frame().rename(columns={"a": "Séminaire °C", "b": "Côte-des-Neiges"})
    df.to_csv(tmp_path / "cp1252.csv", index=False, encoding="cp1252")
    # execute
    frame, report = load_table(tmp_path / "cp1252.csv")
    # assert
    assert report.columns == ["Séminaire °C", "Côte-des-Neiges"]
    assert frame["Séminaire °C"].tolist() == _frame()["a"].tolist()


def _spec_of(path, config):
    from edgecomp.spec import ModelSpec

    return ModelSpec(arch="lstm", **prepare(path, config).spec_fields())


def test_scoring_a_model_on_another_file_warns(tmp_path):
    # setup: trained on one file; build, analyze, tune and bench are pointed at another (the
    # same readings in other units: tenths)
    from edgecomp.workflow import dataset_for

    config = DataConfig(input_len=6, horizon=2)
    _frame(200).to_csv(tmp_path / "trained.csv", index=False)
    other = _frame(200).assign(a=lambda d: d["a"] / 10, b=lambda d: d["b"] / 10)
    other.to_csv(tmp_path / "other.csv", index=False)
    spec = _spec_of(tmp_path / "trained.csv", config)
    # execute / assert
    with pytest.warns(UserWarning, match=r"other\.csv is not the file the model was trained on"):
        dataset_for(spec, tmp_path / "other.csv")


@pytest.mark.filterwarnings("error")
def test_the_training_file_or_its_rows_re_saved_raise_no_warning(tmp_path):
    # setup: the same rows as CSV and as gzipped CSV (other bytes, other sha256)
    from edgecomp.workflow import dataset_for

    config = DataConfig(input_len=6, horizon=2)
    _frame(200).to_csv(tmp_path / "trained.csv", index=False)
    _frame(200).to_csv(tmp_path / "again.csv.gz", index=False)
    spec = _spec_of(tmp_path / "trained.csv", config)
    # execute
    same = dataset_for(spec, tmp_path / "trained.csv")
    resaved = dataset_for(spec, tmp_path / "again.csv.gz")
    # assert
    assert same.source["sha256"] != resaved.source["sha256"]


def test_column_names_with_commas_can_be_named_in_comma_separated_flags(tmp_path):
    # setup: "Temp, C" and "RH,%" given as --features/--targets/--exclude split them at commas
    df = _frame().rename(columns={"a": "Temp, C", "b": "RH,%"}).assign(x=1.5, y=np.arange(60.0))
    df.to_csv(tmp_path / "units.csv", index=False)
    config = DataConfig(
        input_len=6,
        horizon=2,
        features=("Temp", "C", "RH", "%", "y"),  # what parse_names makes of "Temp, C,RH,%,y"
        targets=("Temp", "C"),
        exclude=("x",),
        drop_sparse=0.5,
    )
    # execute
    dataset = prepare(tmp_path / "units.csv", config)
    _, report = load_table(tmp_path / "units.csv", exclude=("RH", "%"))
    # assert
    assert dataset.features == ["Temp, C", "RH,%", "y"] and dataset.targets == ["Temp, C"]
    assert report.columns == ["Temp, C", "x", "y"]


@pytest.mark.parametrize("clock", ["%H:%M", "%H:%M:%S"])
def test_a_loggers_date_and_time_columns_are_joined(tmp_path, clock):
    # setup: "Date;Time" as data loggers write them (read alone, the dates repeat 24 times)
    df = _frame(72).assign(time=pd.date_range("2024-03-20", periods=72, freq="h"))
    logger = pd.DataFrame(
        {
            "Date": df["time"].dt.strftime("%d.%m.%Y"),
            "Time": df["time"].dt.strftime(clock),
            "a": df["a"],
        }
    )
    logger.to_csv(tmp_path / "logger.csv", sep=";", decimal=",", index=False)
    # execute
    frame, report = load_table(tmp_path / "logger.csv")
    # assert
    assert list(frame.index) == list(df["time"]) and report.columns == ["a"]
    assert any("joined with the clock times in 'Time'" in note for note in report.notes)


def test_a_daily_file_keeps_a_column_of_clock_times_as_it_is(tmp_path):
    # setup: one row a day; "sunrise" is text data, not the time of the row
    t = pd.date_range("2024-03-01", periods=20, freq="D")
    daily = pd.DataFrame({"date": t.strftime("%Y-%m-%d"), "sunrise": "06:12", "a": 1.0})
    daily.to_csv(tmp_path / "daily.csv", index=False)
    # execute
    frame, report = load_table(tmp_path / "daily.csv")
    # assert
    assert list(frame.index) == list(t) and report.columns == ["a"]


def test_dates_that_mostly_repeat_ask_where_the_clock_time_is(tmp_path):
    # setup: hourly rows whose time column holds the date only (the clock is not in the file)
    t = pd.date_range("2024-03-20", periods=72, freq="h")
    pd.DataFrame({"date": t.strftime("%Y-%m-%d"), "a": np.arange(72.0)}).to_csv(
        tmp_path / "dates.csv", index=False
    )
    # execute / assert
    with pytest.raises(DataError, match="dates only and most repeat: is the clock time"):
        load_table(tmp_path / "dates.csv")


def test_the_suggested_window_counts_business_days_on_a_business_day_grid():
    from edgecomp.data.summary import suggest_windows

    # execute
    business = suggest_windows(86_400, 1300, business_days=True)
    calendar = suggest_windows(86_400, 1300)
    # assert: four weeks and one week are 20 and 5 steps on weekdays, 28 and 7 on every day
    assert (business["input_len"], business["horizon"]) == (20, 5)
    assert (calendar["input_len"], calendar["horizon"]) == (28, 7)


def test_edgecomp_data_suggests_business_day_windows(tmp_path):
    from click.testing import CliRunner

    from edgecomp.cli import main

    # setup: five years of weekday returns
    t = pd.bdate_range("2013-02-11", periods=1257)
    returns = pd.DataFrame({"date": t, "MSFT": np.sin(np.arange(1257.0))})
    returns.to_csv(tmp_path / "returns.csv", index=False)
    # execute
    result = CliRunner().invoke(main, ["data", str(tmp_path / "returns.csv"), "--json"])
    # assert
    summary = json.loads(result.stdout)
    assert summary["business_days"] is True
    assert (summary["suggested"]["input_len"], summary["suggested"]["horizon"]) == (20, 5)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("readings.tsv", {"sep": "\t"}),
        ("readings.tsv.gz", {"sep": "\t"}),
        ("readings.txt", {"sep": ";", "decimal": ","}),
        ("readings.csv.bz2", {}),
        ("readings.csv.xz", {}),
        ("readings.csv.zip", {}),
    ],
)
def test_text_tables_under_other_suffixes_and_compressions_read(tmp_path, name, options):
    # setup / execute
    want, (got, _) = _read_both(tmp_path, name, options)
    # assert
    pd.testing.assert_frame_equal(got, want)


@pytest.mark.parametrize(
    ("freq", "jitter", "note"),
    [
        ("1h", [0, 1, 3, -2], "snapped to a 3600-second grid (off by up to 3 s)"),
        ("100ms", [0, 0.002, -0.003, 0.001], "snapped to a 0.1-second grid (off by up to 0.003 s)"),
        ("90min", [0, 40, -55, 20], "snapped to a 5400-second grid (off by up to 55 s)"),
    ],
)
def test_a_loggers_jittered_timestamps_are_snapped_to_the_grid(tmp_path, freq, jitter, note):
    # setup: readings written a little late or early (hourly: a few seconds; 10 Hz: ms)
    t = pd.date_range("2024-03-20", periods=200, freq=freq)
    stamps = t + pd.to_timedelta(np.tile(jitter, 50), unit="s")
    pd.DataFrame({"time": stamps, "a": np.arange(200.0)}).to_csv(
        tmp_path / "jitter.csv", index=False
    )
    # execute
    frame, report = load_table(tmp_path / "jitter.csv")
    # assert
    assert list(frame.index) == list(t) and report.period_s == pd.Timedelta(freq).total_seconds()
    assert frame["a"].tolist() == list(range(200))
    assert any(note in n for n in report.notes)


def test_timestamps_far_off_the_grid_are_still_refused(tmp_path):
    # setup: a logger that switched from :00 to :20 halfway
    t = pd.date_range("2024-03-20", periods=72, freq="h")
    shift = pd.to_timedelta(np.where(np.arange(72) < 36, 0, 20), unit="min")
    pd.DataFrame({"time": t + shift, "a": np.arange(72.0)}).to_csv(
        tmp_path / "shift.csv", index=False
    )
    # execute / assert
    with pytest.raises(DataError, match="off the regular 3600-second grid"):
        load_table(tmp_path / "shift.csv")


def test_timestamps_on_a_grid_get_no_snapping_note(tmp_path):
    # setup
    _frame().to_csv(tmp_path / "plain.csv", index=False)
    # execute
    _, report = load_table(tmp_path / "plain.csv")
    # assert
    assert not any("snapped" in n for n in report.notes)


@pytest.mark.parametrize(("given", "ok"), [([], True), (["-L", "48"], False), (["-H", "8"], False)])
def test_edgecomp_data_on_a_short_file_counts_a_window_that_fits(tmp_path, given, ok):
    from click.testing import CliRunner

    from edgecomp.cli import main

    # setup: 196 days (the BIXI season): a 15 % split holds 29 rows, the default needs 56
    t = pd.date_range("2019-04-15", periods=196, freq="D")
    pd.DataFrame({"date": t, "a": np.sin(np.arange(196.0))}).to_csv(
        tmp_path / "season.csv", index=False
    )
    # execute
    result = CliRunner().invoke(main, ["data", str(tmp_path / "season.csv"), "--json", *given])
    # assert: the defaults give way to a window that fits; a window the user gave does not
    if ok:
        summary = json.loads(result.stdout)
        assert summary["windows"]["test"] > 0
        assert "(the defaults) do not fit this file" in summary["notes"][0]
    else:
        assert result.exit_code == 2 and "pass a shorter window" in result.output
