"""Training reads observed targets only: a station that is down (its targets imputed) teaches
the graph model nothing (``edgecomp.train``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgecomp.data.windows import Windows
from edgecomp.train import TrainConfig, train_module


def test_training_loss_skips_unobserved_targets():
    # setup: two identical windows, the second's targets unobserved and absurd
    x = np.zeros((2, 3, 1), np.float32)
    y = np.array([[[1.0]], [[1000.0]]], np.float32)
    windows = Windows(x, y, np.arange(2), np.array([[[True]], [[False]]]))
    module = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(3, 1), torch.nn.Unflatten(1, (1, 1))
    )
    config = TrainConfig(epochs=200, lr=0.05, batch_size=2, patience=200)
    # execute
    result = train_module(module, windows, windows, config)
    # assert: it learns the observed target only (the bias reaches 1, not the mean 500.5)
    assert result.module[1].bias.item() == pytest.approx(1.0, abs=0.05)
