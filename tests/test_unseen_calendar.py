"""``--calendar auto`` trains into the user's --out-dir without deleting what was there: with
few epochs it trains both variants fully and used to replace the whole folder by the winner's,
so ``edgecomp train mywork/data.csv --epochs 2 --out-dir mywork`` deleted the data file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from edgecomp.data import DataConfig


def _hourly(path):
    t = pd.date_range("2024-01-01", periods=24 * 20, freq="h")
    rng = np.random.default_rng(2)
    y = 10 * np.sin(2 * np.pi * t.hour / 24) + rng.normal(0, 1, len(t))
    pd.DataFrame({"time": t, "y": y}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("probe", [None, 1])
def test_the_out_dir_keeps_the_users_files(tmp_path, probe):
    from edgecomp.calendar_choice import train_with_calendar_choice
    from edgecomp.train import TrainConfig

    # setup: the user's folder holds the data, notes and an old TensorBoard run
    work = tmp_path / "mywork"
    work.mkdir()
    data = _hourly(work / "data.csv")
    (work / "notes.txt").write_text("precious")
    (work / "tb").mkdir()
    (work / "tb" / "old-run").write_text("events")
    train = TrainConfig(arch="gru", hparams={"hidden": 8, "layers": 1}, epochs=2)
    # execute
    outcome = train_with_calendar_choice(
        data, DataConfig(input_len=6, horizon=2), train, work, probe_epochs=probe
    )
    # assert: the user's files stay, the checkpoint is there, no temporary folder is left
    assert (work / "notes.txt").read_text() == "precious" and data.is_file()
    assert (work / "tb" / "old-run").read_text() == "events"
    assert {"model.safetensors", "spec.json", "eval.json"} <= {p.name for p in work.iterdir()}
    assert not [p for p in work.iterdir() if p.name.startswith(".edgecomp-calendar-")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mywork"]
    assert outcome.path == work
    assert json.loads((work / "eval.json").read_text())["calendar"]["method"] == (
        "full" if probe is None else "probe"
    )


def test_the_current_folder_can_be_the_out_dir(tmp_path, monkeypatch):
    from pathlib import Path

    from edgecomp.calendar_choice import train_with_calendar_choice
    from edgecomp.train import TrainConfig

    # setup: --out-dir . (Path('.').with_name(...) raised ValueError before)
    monkeypatch.chdir(tmp_path)
    data = _hourly(tmp_path / "data.csv")
    train = TrainConfig(arch="gru", hparams={"hidden": 8, "layers": 1}, epochs=1)
    # execute
    train_with_calendar_choice(data, DataConfig(input_len=6, horizon=2), train, Path("."))
    # assert
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "data.csv").is_file()
