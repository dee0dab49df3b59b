import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_DATA = ROOT / "examples" / "data"


@pytest.fixture(scope="session")
def traffic_path() -> Path:
    return EXAMPLE_DATA / "odot_detector_counts_15min.parquet"


@pytest.fixture(scope="session")
def traffic_config():
    from edgecomp.data import DataConfig

    return DataConfig(input_len=16, horizon=4, id_col="detector", value_cols=("total",))


@pytest.fixture(scope="session")
def traffic_checkpoints(tmp_path_factory, traffic_path, traffic_config):
    """Tiny LSTM, GRU and TCN trained for 2 epochs on the real traffic data (shared by tests)."""
    import torch

    from edgecomp.train import TrainConfig
    from edgecomp.workflow import train_checkpoint

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ckpt")
    hparams = {
        "lstm": {"hidden": 16, "layers": 1},
        "gru": {"hidden": 8, "layers": 1},
        "tcn": {"channels": 16},
    }
    return {
        arch: train_checkpoint(
            traffic_path, traffic_config, TrainConfig(arch=arch, hparams=hp, epochs=2), root / arch
        ).path
        for arch, hp in hparams.items()
    }


@pytest.fixture(scope="module")  # a fresh copy per module: builds may fine-tune it
def traffic_tcn(traffic_checkpoints, traffic_path):
    """The shared TCN checkpoint and its traffic dataset: ``(Model, Dataset)``."""
    from edgecomp.checkpoint import load_checkpoint
    from edgecomp.workflow import dataset_for

    model = load_checkpoint(traffic_checkpoints["tcn"])
    return model, dataset_for(model.spec, traffic_path)
