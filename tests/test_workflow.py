"""The CLI's jobs as library calls: training is reproducible, evaluation has the baselines."""

import torch

from edgecomp.data import DataConfig
from edgecomp.train import TrainConfig
from edgecomp.workflow import train_checkpoint


def test_same_seed_same_checkpoint_in_one_process(traffic_path, tmp_path):
    # setup: a tiny LSTM on the real traffic data; the global torch RNG moves between the runs
    data = DataConfig(input_len=8, horizon=2, id_col="detector", value_cols=("total",))
    config = TrainConfig(arch="lstm", hparams={"hidden": 4, "layers": 1}, epochs=1)
    # execute
    first = train_checkpoint(traffic_path, data, config, tmp_path / "a")
    torch.rand(10)
    second = train_checkpoint(traffic_path, data, config, tmp_path / "b")
    # assert
    a, b = first.model.module.state_dict(), second.model.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert first.evaluation["model"] == second.evaluation["model"]
    assert set(first.evaluation["baselines"]) == {
        "last_value",
        "seasonal_naive_1d",
        "seasonal_naive_1w",
        "train_mean",
    }
