"""TensorBoard of a training run: per-step validation MAE, learning rate, the final table."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator", reason="tensorboard missing"
)

EPOCHS, LR = 2, 3e-3


@pytest.fixture(scope="module")
def run(tmp_path_factory, traffic_path, traffic_config):
    import torch

    from edgecomp.checkpoint import load_checkpoint, read_train_info
    from edgecomp.train import TrainConfig
    from edgecomp.workflow import dataset_for, evaluate, train_checkpoint

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tb") / "ckpt"
    config = TrainConfig(arch="lstm", hparams={"hidden": 8, "layers": 1}, epochs=EPOCHS, lr=LR)
    train_checkpoint(traffic_path, traffic_config, config, out)
    model = load_checkpoint(out)
    dataset = dataset_for(model.spec, traffic_path)
    acc = event_accumulator.EventAccumulator(str(out / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    return {
        "acc": acc,
        "history": read_train_info(out)["history"],
        "eval": json.loads((out / "eval.json").read_text()),
        "val": evaluate(model, dataset, "val"),
        "horizon": model.spec.horizon,
    }


def _values(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_per_step_validation_mae_and_lr_are_logged_every_epoch(run):
    # setup
    acc, history, horizon = run["acc"], run["history"], run["horizon"]
    tags = set(acc.Tags()["scalars"])
    # assert
    expected = {f"val_mae/h{h}" for h in range(1, horizon + 1)} | {"val_mae/mean", "lr"}
    assert expected <= tags
    assert f"val_mae/h{horizon + 1}" not in tags
    for h in range(1, horizon + 1):
        logged = _values(acc, f"val_mae/h{h}")
        assert [step for step, _ in logged] == list(range(1, EPOCHS + 1))
        for (_, value), epoch in zip(logged, history, strict=True):
            assert math.isfinite(value) and value > 0
            assert value == pytest.approx(epoch["val_mae"][h - 1], rel=1e-6)
    means = [value for _, value in _values(acc, "val_mae/mean")]
    assert means == pytest.approx([np.mean(e["val_mae"]) for e in history], rel=1e-6)
    assert [value for _, value in _values(acc, "lr")] == pytest.approx([LR] * EPOCHS)


def test_validation_mae_is_in_raw_units_on_observed_values(run):
    # the kept (best) epoch's logged MAE is the restored model's evaluation on val
    history = run["history"]
    best = min(history, key=lambda e: e["val_loss"])
    assert best["val_mae"] == pytest.approx(run["val"]["model"]["mae"], rel=1e-5)


@pytest.mark.parametrize("split", ["test", "val"])
def test_final_table_scalars_match_the_training_summary(run, split):
    # setup: the test numbers are eval.json's, the validation numbers a fresh evaluation
    acc, summary = run["acc"], run["eval"] if split == "test" else run["val"]
    forecasters = {"model": summary["model"], **summary["baselines"]}
    # assert
    assert len(forecasters) >= 3  # model, last_value, train_mean (and seasonal ones)
    for name, metrics in forecasters.items():
        for metric in ("mae", "rmse"):
            logged = _values(acc, f"final/{split}/{name}/{metric}")
            assert [step for step, _ in logged] == list(range(1, run["horizon"] + 1))
            assert [v for _, v in logged] == pytest.approx(metrics[metric], rel=1e-6)


def test_final_table_is_a_markdown_text_summary(run):
    # setup
    from tensorboard.util import tensor_util

    acc = run["acc"]
    (event,) = acc.Tensors("final/table/text_summary")
    text = tensor_util.make_ndarray(event.tensor_proto).item().decode()
    lines = text.splitlines()
    # assert
    assert lines[0].startswith("| split | forecaster | metric | h1 |")
    row = next(line for line in lines if line.startswith("| test | model | mae |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert [float(c) for c in cells[3:-1]] == pytest.approx(run["eval"]["model"]["mae"], rel=1e-3)
    assert any(line.startswith("| val | last_value | rmse |") for line in lines)
