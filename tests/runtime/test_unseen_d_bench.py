"""``edgecomp-runtime bench ARTIFACT --data FILE`` for a model with known-future inputs (calendar
or declared columns) is refused in one line naming the file and what to use instead, nothing
written; before, it said the data file lacked the columns 'hour_sin@+4', 'hour_cos@+4' (inputs
the runtime computes, which no data file holds)."""

from __future__ import annotations

from edgecomp_runtime.__main__ import main

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
