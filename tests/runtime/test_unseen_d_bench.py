"""``edgecomp-runtime bench ARTIFACT --data FILE`` for a model with known-future inputs (calendar
or declared columns) is refused in one line naming the file and what to use instead, nothing
written; before, it said the data file lacked the columns 'hour_sin@+4', 'hour_cos@+4' (inputs
the runtime computes, which no data file holds)."""

from __future__ import annotations

import numpy as np
import pytest

from edgecomp_runtime.__main__ import main
from edgecomp_runtime.bench import BenchConfig, bench, read_table

QUICK = BenchConfig(batch_sizes=(1,), min_iters=3, min_seconds=0.0, warmup=1)

FUTURE = {
    "spec.features": ["a", "hour_sin@+2", "hour_cos@+2"],
    "spec.targets": ["a", "a"],
    "spec.future": {"calendar": ["hour"], "columns": [], "lead": 2,
                    "features": ["hour_sin@+2", "hour_cos@+2"]},
}  # fmt: skip


def test_runtime_bench_refuses_to_score_a_known_future_model_on_a_data_file(
    tmp_path, make_artifact, capsys
):
    # setup
    data = tmp_path / "site.csv"
    rows = [f"2025-01-01T{h:02d}:00:00Z,{h}" for h in range(20)]
    data.write_text("timestamp,a\n" + "\n".join(rows) + "\n")
    out = tmp_path / "bench.json"
    # execute
    code = main(["bench", str(make_artifact(manifest=FUTURE)), "--data", str(data), "-o", str(out)])
    # assert
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert f"{data}: the runtime bench does not score a model with known-future inputs" in err
    assert err.endswith("use edgecomp bench ARTIFACT --data FILE")
    assert not out.exists()


@pytest.mark.parametrize("header", ["Date", "TIMESTAMP", "Time"])
def test_a_capitalized_time_header_finds_the_gaps(tmp_path, make_artifact, header):
    # setup: 40 rows 900 s apart with one dropped; before, 'Date' or 'Time' was not taken for a
    # time column, so windows across the gap were scored as if it were not there
    stamps = [1_700_000_000 + 900 * k for k in range(41) if k != 20]
    rng = np.random.default_rng(0)
    rows = [f"{s},{10 + rng.normal():.3f},{-2 + rng.normal():.3f},{100 + rng.normal():.3f}"
            for s in stamps]  # fmt: skip
    data = tmp_path / "site.csv"
    data.write_text(f"{header},a,b,c\n" + "\n".join(rows) + "\n")
    # execute
    values, seconds = read_table(data, ["a", "b", "c"])
    (result,) = bench([make_artifact()], data=data, config=QUICK)
    # assert: the toy's windows span 8 rows; the 7 starting at rows 13 to 19 cross the gap
    assert seconds is not None and seconds[20] - seconds[19] == 1800
    assert result["accuracy"]["n_skipped_gaps"] == 7


def test_a_capitalized_time_column_of_a_parquet_file_is_read(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    # setup
    stamps = pd.date_range("2024-01-01", periods=5, freq="15min")
    data = tmp_path / "site.parquet"
    pd.DataFrame({"Timestamp": stamps, "a": 1.0, "b": 2.0, "c": 3.0}).to_parquet(data)
    # execute
    _, seconds = read_table(data, ["a", "b", "c"])
    # assert
    assert seconds is not None and seconds[1] - seconds[0] == 900
