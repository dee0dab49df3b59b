"""Real-world data: sparse columns, --exclude, --drop-sparse, --time-col, duplicates (issue 17)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from edgecomp.cli import main
from edgecomp.data import DataConfig, DataError, config_from_spec, load_table, prepare
from edgecomp.dataflags import reading


def _frame(n: int = 120, freq: str = "h") -> pd.DataFrame:
    t = pd.date_range("2024-03-01", periods=n, freq=freq)
    i = np.arange(n, dtype=float)
    return pd.DataFrame({"when": t.strftime("%Y-%m-%d %H:%M:%S"), "a": np.sin(i), "b": i % 5})


def _csv(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def test_every_empty_column_is_listed_in_one_error(tmp_path):
    # setup
    df = _frame()
    df["dead1"], df["dead2"] = np.nan, np.nan
    # execute / assert
    with pytest.raises(DataError, match=r"2 column\(s\) empty.*'dead1', 'dead2'.*--drop-sparse"):
        load_table(_csv(df, tmp_path / "e.csv"))


def test_drop_sparse_drops_empty_and_sparse_columns_with_a_note(tmp_path):
    # setup: c is 60 % missing in the test split only, dead is empty
    df = _frame()
    df["c"] = 1.0 + np.arange(120) % 3
    df.loc[102:112, "c"] = np.nan
    df["dead"] = np.nan
    config = DataConfig(input_len=4, horizon=2, drop_sparse=0.5)
    # execute
    ds = prepare(_csv(df, tmp_path / "s.csv"), config)
    # assert
    assert ds.features == ["a", "b"]
    note = next(n for n in ds.notes if n.startswith("drop_sparse"))
    assert "dead (100%)" in note and "c (61%)" in note
    assert ds.spec_fields()["data"]["drop_sparse"] == 0.5


def test_drop_sparse_keeps_named_columns_and_refuses_dropping_all(tmp_path):
    # setup
    df = _frame()
    df.loc[5:60, "b"] = np.nan  # 67 % of the train split
    path = _csv(df, tmp_path / "n.csv")
    # execute
    kept = prepare(path, DataConfig(input_len=4, horizon=2, drop_sparse=0.5, features=("a", "b")))
    dropped = prepare(path, DataConfig(input_len=4, horizon=2, drop_sparse=0.5))
    # assert
    assert kept.features == ["a", "b"] and dropped.features == ["a"]
    df.loc[3, "a"] = np.nan
    with pytest.raises(DataError, match=r"would drop every column \(least sparse misses 1%"):
        prepare(_csv(df, tmp_path / "m.csv"), DataConfig(input_len=4, horizon=2, drop_sparse=0.0))


def test_exclude_leaves_out_file_columns_and_features_and_refuses_unknown(tmp_path):
    # setup
    df = _frame()
    df["dead"] = np.nan
    path = _csv(df, tmp_path / "x.csv")
    # execute
    ds = prepare(path, DataConfig(input_len=4, horizon=2, exclude=("dead", "b")))
    # assert
    assert ds.features == ["a"] and "excluded: dead, b" in ds.notes + ds.report.notes
    unknown = r"--exclude: column\(s\) \['nope'\] not found; file columns: \[when"
    with pytest.raises(DataError, match=unknown):
        prepare(path, DataConfig(input_len=4, horizon=2, exclude=("nope",)))


def test_exclude_names_a_series_of_a_long_table(tmp_path):
    # setup: station s3 has no values
    t = pd.date_range("2024-01-01", periods=60, freq="h").strftime("%Y-%m-%dT%H:%M:%SZ")
    stations = ("s1", "s2", "s3")
    rows = [(ts, s, (k if s != "s3" else np.nan)) for k, ts in enumerate(t) for s in stations]
    df = pd.DataFrame(rows, columns=["time", "station", "count"])
    # execute
    frame, report = load_table(_csv(df, tmp_path / "l.csv"), exclude=("s3",))
    # assert
    assert list(frame.columns) == ["s1", "s2"] and report.layout == "long"


def test_time_column_not_found_lists_the_real_columns(tmp_path):
    # setup
    path = _csv(_frame(), tmp_path / "t.csv")
    # execute
    result = CliRunner().invoke(main, ["data", str(path), "-L", "4", "-H", "2", "--time-col", "x"])
    # assert
    assert result.exit_code == 2
    assert "time column 'x' not found; columns: [when, a, b]" in result.output


def test_parquet_time_index_is_read_as_the_time_column(tmp_path):
    # setup
    df = _frame().assign(when=lambda d: pd.to_datetime(d["when"])).set_index("when")
    df.to_parquet(tmp_path / "p.parquet")
    # execute
    frame, report = load_table(tmp_path / "p.parquet")
    # assert
    assert report.time_col == "when" and list(frame.columns) == ["a", "b"]


def test_reading_options_override_the_spec_for_commands_that_window_per_spec(tmp_path):
    # setup: a spec recorded with time column 'when'
    ds = prepare(_csv(_frame(), tmp_path / "a.csv"), DataConfig(input_len=4, horizon=2))
    spec = {"arch": "lstm", **ds.spec_fields()}
    # execute
    with reading(time_col="other", exclude=("b",), drop_sparse=0.3, on_duplicate="mean"):
        inside = config_from_spec(spec)
    outside = config_from_spec(spec)
    # assert
    assert (inside.time_col, inside.exclude, inside.drop_sparse) == ("other", ("b",), 0.3)
    assert inside.on_duplicate == "mean"
    assert (outside.time_col, outside.exclude, outside.on_duplicate) == ("when", None, "error")


@pytest.mark.parametrize(
    ("command", "extra"),
    [("build", ["ckpt", "--data"]), ("bench", ["a.edgepkg", "--data"]), ("tune", ["c", "--data"])],
)
def test_reading_flags_refuse_bad_values_naming_flag_and_value(tmp_path, command, extra):
    # setup
    path = _csv(_frame(), tmp_path / "a.csv")
    (tmp_path / "a.edgepkg").write_text("x")
    args = [command, *[str(tmp_path / e) if e != "--data" else e for e in extra], str(path)]
    # execute
    result = CliRunner().invoke(main, [*args, "--drop-sparse", "1.5"])
    bad_dup = CliRunner().invoke(main, [*args, "--on-duplicate", "max"])
    # assert
    assert result.exit_code == 2 and "'--drop-sparse': 1.5 is not in the range" in result.output
    assert bad_dup.exit_code == 2 and "'--on-duplicate': 'max' is not one of" in bad_dup.output


# --- duplicates ------------------------------------------------------------------------------


def _dup_frame() -> pd.DataFrame:
    df = _frame(40)
    extra = df.iloc[[10]].assign(a=100.0, b=np.nan)  # same timestamp, other values
    return pd.concat([df.iloc[:11], extra, df.iloc[11:]], ignore_index=True)


@pytest.mark.parametrize(
    ("policy", "a", "b"), [("first", None, 0.0), ("last", 100.0, np.nan), ("mean", "mean", 0.0)]
)
def test_each_duplicate_policy_on_a_planted_duplicate(tmp_path, policy, a, b):
    # setup
    df = _dup_frame()
    original = float(df.loc[10, "a"])
    # execute
    frame, report = load_table(_csv(df, tmp_path / "d.csv"), on_duplicate=policy)
    # assert
    row = frame.loc[pd.Timestamp("2024-03-01 10:00")]
    want_a = {None: original, "mean": (original + 100.0) / 2}.get(a, a)
    assert row["a"] == pytest.approx(want_a)
    assert (np.isnan(row["b"]) and np.isnan(b)) or row["b"] == b
    assert len(frame) == 40 and f"on_duplicate={policy}: 1 rows" in " ".join(report.notes)


def test_duplicate_error_hints_dst_only_with_clock_times(tmp_path):
    # setup
    hourly = _csv(_dup_frame(), tmp_path / "h.csv")
    daily = _dup_frame()
    daily["when"] = (
        pd.date_range("2024-01-01", periods=40, freq="D").strftime("%Y-%m-%d").tolist()[:11]
        + ["2024-01-11"]
        + pd.date_range("2024-01-12", periods=29, freq="D").strftime("%Y-%m-%d").tolist()
    )
    daily_path = _csv(daily, tmp_path / "day.csv")
    # execute
    with pytest.raises(DataError) as hourly_err:
        load_table(hourly)
    with pytest.raises(DataError) as daily_err:
        load_table(daily_path)
    # assert
    assert "DST" in str(hourly_err.value) and "--on-duplicate" in str(hourly_err.value)
    assert "DST" not in str(daily_err.value) and "--on-duplicate" in str(daily_err.value)


def test_long_table_duplicate_pair_is_averaged_with_mean(tmp_path):
    # setup
    t = pd.date_range("2024-01-01", periods=30, freq="h").strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = [(ts, s, float(k)) for k, ts in enumerate(t) for s in ("s1", "s2")]
    rows.append((t[5], "s1", 15.0))
    df = pd.DataFrame(rows, columns=["time", "station", "v"])
    # execute
    frame, _ = load_table(_csv(df, tmp_path / "l.csv"), on_duplicate="mean")
    # assert
    assert frame["s1"].iloc[5] == pytest.approx(10.0) and frame["s2"].iloc[5] == 5.0


# --- seasons ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("freq", "n", "seasons", "names"),
    [
        ("h", 600, (24, 168), ["seasonal_naive_1d", "seasonal_naive_1w"]),
        ("30min", 1200, (48, 336), ["seasonal_naive_1d", "seasonal_naive_1w"]),
        ("D", 200, (7,), ["seasonal_naive_1w"]),
        ("B", 200, (5,), ["seasonal_naive_1w"]),
    ],
)
def test_default_seasons_follow_the_sampling_period(tmp_path, freq, n, seasons, names):
    # setup
    path = _csv(_frame(n, freq), tmp_path / "s.csv")
    # execute
    ds = prepare(path, DataConfig(input_len=4, horizon=2))
    # assert
    assert ds.seasons == seasons
    assert [ds.season_name(s) for s in seasons] == names
    assert ds.spec_fields()["data"]["seasons"] == list(seasons)


def test_seasonal_baselines_appear_with_the_right_values(tmp_path):
    # setup: daily data with a weekly pattern; the weekly seasonal naive is exact
    from edgecomp.pipeline import baseline_metrics

    df = _frame(200, "D")
    df["a"] = np.arange(200) % 7 * 10.0
    ds = prepare(_csv(df, tmp_path / "w.csv"), DataConfig(input_len=8, horizon=3, targets=("a",)))
    # execute
    baselines = baseline_metrics(ds, "test")
    # assert
    assert set(baselines) == {"last_value", "seasonal_naive_1w", "train_mean"}
    assert baselines["seasonal_naive_1w"]["mae"] == pytest.approx([0.0, 0.0, 0.0])
    assert min(baselines["last_value"]["mae"]) > 1.0


def test_season_flag_overrides_and_refuses_bad_values(tmp_path):
    # setup
    path = _csv(_frame(300), tmp_path / "s.csv")
    runner = CliRunner()
    # execute
    custom = runner.invoke(main, ["data", str(path), "-L", "4", "-H", "2", "--season", "12,24"])
    bad = runner.invoke(main, ["data", str(path), "-L", "4", "-H", "2", "--season", "0,x"])
    # assert
    assert custom.exit_code == 0, custom.output
    assert "seasonal_naive_12steps" in custom.output and "seasonal_naive_1d" in custom.output
    assert bad.exit_code == 2 and "'--season': '0,x' is not STEPS[,STEPS]" in bad.output


# --- non-negative targets ----------------------------------------------------------------------


def _counts(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    t = pd.date_range("2024-01-01", periods=n, freq="h").strftime("%Y-%m-%d %H:%M:%S")
    lam = 0.3 + 2 * (np.sin(np.arange(n) * 2 * np.pi / 24) > 0.5)
    return pd.DataFrame({"time": t, "bikes": rng.poisson(lam), "temp": rng.normal(0, 5, n)})


def test_output_floor_is_zero_for_non_negative_targets_only(tmp_path):
    # setup
    path = _csv(_counts(), tmp_path / "c.csv")
    config = DataConfig(input_len=8, horizon=2)
    # execute
    auto = prepare(path, config)
    none = prepare(path, DataConfig(input_len=8, horizon=2, target_transform="none"))
    # assert
    assert auto.output_floor == [0.0, None] and auto.spec_fields()["output_floor"] == [0.0, None]
    assert none.output_floor is None
    negative = r"--target-transform clamp needs non-negative targets.*temp \(min -1"
    with pytest.raises(DataError, match=negative):
        prepare(path, DataConfig(input_len=8, horizon=2, target_transform="clamp"))


def test_a_forecaster_on_a_count_series_never_predicts_below_zero(tmp_path):
    import torch

    from edgecomp.pipeline import BuildConfig, build
    from edgecomp.train import TrainConfig
    from edgecomp.workflow import train_checkpoint
    from edgecomp_runtime import load

    # setup: a count series that is 0 most of the time; one epoch leaves the model rough
    torch.set_num_threads(1)
    path = _csv(_counts(), tmp_path / "c.csv")
    data = DataConfig(input_len=8, horizon=4, targets=("bikes",))
    config = TrainConfig(arch="tcn", hparams={"channels": 8}, epochs=1, lr=0.05)
    outcome = train_checkpoint(path, data, config, tmp_path / "ckpt")
    ds = prepare(path, data)
    # execute
    unclamped = ds.std[0] * outcome.model.module(torch.from_numpy(ds.test.x)).detach().numpy()
    artifact = build(outcome.model, ds, BuildConfig(precision="fp32"), tmp_path / "c.edgepkg")
    forecasts = load(artifact.path).predict(ds.raw_inputs("test", imputed=True))
    # assert: the bare network does go below zero, the artifact never does
    assert (unclamped + ds.mean[0] < 0).any()
    assert forecasts.min() >= 0.0 and (forecasts == 0).any()


def test_late_start_bike_share_file_reads_without_editing():
    # setup: 6 of its 14 stations open 21-52 days late; holiday is True/False text
    path = Path(__file__).parent / "data" / "bixi_late_start.csv"
    # execute
    result = CliRunner().invoke(main, ["data", str(path), "-L", "14", "-H", "7", "--json"])
    # assert: windows the gateway would refuse are left out, not trained on
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["features"] == 16 and summary["seasons"] == {"seasonal_naive_1w": 7}
    assert summary["left_out"]["train"]["windows"] == 45
    assert summary["left_out"]["train"]["columns"]["st_6078"] == 45
    assert summary["windows"] == {"train": 72, "val": 9, "test": 10}


def test_a_spec_without_output_floor_is_scored_without_clamping(tmp_path):
    # setup: a spec written before output floors existed (count data, no floor recorded)
    path = _csv(_counts(), tmp_path / "c.csv")
    ds = prepare(path, DataConfig(input_len=8, horizon=2))
    old = {"arch": "x", **ds.spec_fields(), "output_floor": None}
    del old["data"]["target_transform"]
    # execute
    rebuilt = prepare(path, config_from_spec(old))
    current = prepare(path, config_from_spec({"arch": "x", **ds.spec_fields()}))
    # assert
    assert rebuilt.output_floor is None and current.output_floor == [0.0, None]
