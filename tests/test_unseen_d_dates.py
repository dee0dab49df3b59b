"""Day-first dates end to end: a training file written DD/MM/YYYY HH:MM records its date order in
the spec (``spec.data.date_order``), and ``edgecomp-runtime predict --input window.csv`` reads a
window of the same logger, whose dates alone cannot tell (all on 01/02/2024), as 1 February: its
forecast equals ``predict(window, times=...)`` with those times. Before, the runtime refused
every DD/MM/YYYY date."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from edgecomp.data import DataConfig, load_table, prepare
from edgecomp_runtime import load
from edgecomp_runtime.__main__ import main

torch.set_num_threads(1)
L, H = 12, 2


def _day_first(path: Path, n: int = 24 * 20) -> Path:
    t = pd.date_range("2024-01-10", periods=n, freq="h")
    rng = np.random.default_rng(0)
    load_ = 50 + 20 * np.sin(np.arange(n) * 2 * np.pi / 24) + 10 * (t.day_of_week >= 5)
    df = pd.DataFrame({"Date": t.strftime("%d/%m/%Y %H:%M"), "load": load_ + rng.normal(0, 1, n)})
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("fmt", "order"),
    [("%d/%m/%Y %H:%M", "day-first"), ("%m/%d/%Y", "month-first"), ("%Y-%m-%d", None)],
)
def test_the_table_report_names_the_date_order(tmp_path, fmt, order):
    # setup
    t = pd.date_range("2024-01-10", periods=30, freq="D")
    path = tmp_path / "t.csv"
    pd.DataFrame({"Date": t.strftime(fmt), "v": np.arange(30.0)}).to_csv(path, index=False)
    # execute
    frame, report = load_table(path)
    # assert
    assert report.date_order == order
    assert frame.index[0] == pd.Timestamp("2024-01-10")


def test_runtime_cli_reads_a_day_first_window_in_the_training_files_order(tmp_path, capsys):
    from edgecomp.pipeline import BuildConfig, build
    from edgecomp.train import TrainConfig
    from edgecomp.workflow import train_checkpoint

    # setup
    data = _day_first(tmp_path / "d.csv")
    config = DataConfig(input_len=L, horizon=H, calendar=("hour", "dow"))
    train = TrainConfig(arch="gru", hparams={"hidden": 8, "layers": 1}, epochs=1)
    outcome = train_checkpoint(data, config, train, tmp_path / "ckpt")
    built = build(
        outcome.model, prepare(data, config), BuildConfig(precision="fp32"), tmp_path / "m.edgepkg"
    )
    model = load(built.path)
    times = pd.date_range("2024-02-01", periods=L, freq="h")
    values = 50 + np.arange(L, dtype=float)
    window = tmp_path / "window.csv"
    pd.DataFrame({"Date": times.strftime("%d/%m/%Y %H:%M"), "load": values}).to_csv(
        window, index=False
    )
    # execute
    code = main(["predict", str(built.path), "--input", str(window)])
    # assert
    out, err = capsys.readouterr()
    assert code == 0, err
    assert model.manifest["spec"]["data"]["date_order"] == "day-first"
    got = np.array(json.loads(out)["forecast"])
    february = model.predict(values[:, None], times=times.to_pydatetime())
    january = model.predict(values[:, None], times=(times - pd.Timedelta(days=30)).to_pydatetime())
    np.testing.assert_allclose(got, february, rtol=1e-6)
    assert not np.allclose(february, january)  # the order matters to this model (day of week)
