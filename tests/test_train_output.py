"""Honest training output: progress lines, why training stopped, warnings, long-horizon tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch
from click.testing import CliRunner
from torch import nn

from edgecomp.cli import main
from edgecomp.data.summary import display_steps, suggest_windows
from edgecomp.data.windows import Windows
from edgecomp.train import (
    TrainConfig,
    TrainResult,
    baseline_warnings,
    epoch_printer,
    train_module,
    training_warnings,
)
from edgecomp.workflow import evaluation_table

torch.set_num_threads(1)


class _Bias(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.tensor(-1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b.expand(x.shape[0], 2, 1)


def _constant(n: int, target: float) -> Windows:
    return Windows(
        np.zeros((n, 3, 1), np.float32), np.full((n, 2, 1), target, np.float32), np.arange(n)
    )


def _result(best: int, ran: int, epochs: int) -> TrainResult:
    history = [{"epoch": e, "train_loss": 1.0, "val_loss": 1.0} for e in range(1, ran + 1)]
    return TrainResult(nn.Linear(1, 1), history, best, 0.5, 1.0, "", epochs)


def test_progress_lines_show_epoch_of_n_losses_time_and_eta():
    # setup
    lines: list[str] = []
    on_epoch = epoch_printer(lines.append, 12)
    # execute
    on_epoch(1, 0.5, 0.4)
    on_epoch(2, 0.3, 0.45)
    # assert
    assert lines[0].startswith("epoch  1/12  train 0.5000  val 0.4000*  ")
    assert lines[1].startswith("epoch  2/12  train 0.3000  val 0.4500   ")
    assert " s/epoch  ETA " in lines[1] and lines[1].endswith(" s")


def test_stop_reason_names_early_stopping_or_the_epoch_limit():
    # setup: val targets opposite to train ones, so val loss rises after epoch 1
    train, val = _constant(16, 1.0), _constant(8, -1.0)
    # execute
    early = train_module(_Bias(), train, val, TrainConfig(epochs=20, patience=2, lr=0.05))
    full = train_module(_Bias(), train, train, TrainConfig(epochs=3, lr=0.05))
    # assert
    assert early.stop_reason == (
        "stopped early at epoch 3/20: no lower validation loss for 2 epochs (patience)"
    )
    assert full.stop_reason == "ran all 3 epochs" and full.best_epoch == 3
    assert all(h["seconds"] >= 0 for h in full.history)
    assert "under-trained" in training_warnings(full)[0]
    assert "best epoch is the first one (of 3)" in training_warnings(early)[0]


def test_training_warnings_only_for_first_or_last_best_epoch():
    assert training_warnings(_result(4, 6, 10)) == []
    assert training_warnings(_result(6, 6, 10)) == []  # last of an early stop is impossible; no cap
    assert "(10/10)" in training_warnings(_result(10, 10, 10))[0]
    assert "first one (of 5)" in training_warnings(_result(1, 5, 10))[0]
    assert training_warnings(_result(1, 1, 1)) == []


def test_baseline_warnings_name_every_losing_step_and_the_baseline():
    # setup
    evaluation = {
        "split": "test",
        "model": {"mae": [1.0, 2.0, 3.0, None]},
        "baselines": {
            "last_value": {"mae": [1.5, 1.9, 2.5, 1.0]},
            "train_mean": {"mae": [9.0, 9.0, 9.0, 9.0]},
        },
    }
    # execute
    warnings = baseline_warnings(evaluation)
    # assert
    assert warnings == [
        "the model loses to the last_value baseline on the test split at 2 of 4 steps "
        "(MAE model vs baseline): h2 (2 vs 1.9), h3 (3 vs 2.5)"
    ]


def test_long_horizons_show_selected_steps_and_the_mean():
    # setup
    evaluation = {"model": {"mae": [float(h) for h in range(1, 25)]}, "baselines": {}}
    # execute
    table = evaluation_table(evaluation, title="t")
    # assert
    assert display_steps(8) == list(range(1, 9))
    assert display_steps(24) == [1, 2, 4, 8, 16, 24]
    assert [c.header for c in table.columns] == [
        "forecaster",
        "h1",
        "h2",
        "h4",
        "h8",
        "h16",
        "h24",
        "mean",
    ]
    assert list(table.columns[-1].cells) == ["12.5"]


def test_suggested_windows_follow_the_period_and_fit_the_table():
    assert suggest_windows(3600, 10_000) == {
        "input_len": 168,
        "horizon": 24,
        "why": "one week of history for the next day",
    }
    assert suggest_windows(86_400, 10_000)["horizon"] == 7
    small = suggest_windows(3600, 400)
    assert small["input_len"] + small["horizon"] <= 52 and "shortened" in small["why"]


def test_data_command_prints_a_readable_summary_and_json(tmp_path):
    # setup: hourly data with one empty column
    t = pd.date_range("2024-01-01", periods=400, freq="h")
    df = pd.DataFrame({"time": t, "a": np.sin(np.arange(400)), "dead": np.nan})
    df.to_csv(tmp_path / "d.csv", index=False)
    args = ["data", str(tmp_path / "d.csv"), "-L", "24", "-H", "4", "--drop-sparse", "0.5"]
    # execute
    text = CliRunner().invoke(main, args)
    raw = CliRunner().invoke(main, [*args, "--json"])
    # assert
    assert text.exit_code == 0, text.output
    assert "grid       400 steps of 1 hour" in text.output
    assert "seasonal_naive_1d (24 steps), seasonal_naive_1w (168 steps)" in text.output
    assert "suggested  -L " in text.output and "dropped 1 column(s)" in text.output
    summary = json.loads(raw.output)
    assert summary["features"] == 1 and summary["suggested"]["input_len"] > 0


def test_data_summary_names_the_sparsest_columns(tmp_path):
    # setup
    t = pd.date_range("2024-01-01", periods=300, freq="h")
    df = pd.DataFrame({"time": t, "a": np.sin(np.arange(300.0)), "b": np.arange(300.0)})
    df.loc[::4, "b"] = np.nan
    df.to_csv(tmp_path / "s.csv", index=False)
    # execute
    result = CliRunner().invoke(main, ["data", str(tmp_path / "s.csv"), "-L", "8", "-H", "2"])
    # assert
    assert result.exit_code == 0, result.output
    assert "sparsest   b 25%\n" in result.output
