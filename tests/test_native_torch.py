"""The runtime's native recurrent kernel against PyTorch: forecasters packed from torch modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgecomp.models import GRUForecaster, LSTMForecaster
from edgecomp_runtime import native
from edgecomp_runtime.native import reference

pytestmark = pytest.mark.skipif(not native.available(), reason=f"{native.unavailable_reason()}")


def _pack(module, precision):
    rnn = module.rnn
    names = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}
    layers = [
        {key: getattr(rnn, f"{name}_l{i}").detach().numpy() for key, name in names.items()}
        for i in range(rnn.num_layers)
    ]
    return native.pack(
        "lstm" if isinstance(rnn, torch.nn.LSTM) else "gru",
        layers,
        module.head.weight.detach().numpy(),
        module.head.bias.detach().numpy(),
        input_len=module.input_len,
        n_features=module.n_features,
        target_index=module.target_index.tolist(),
        residual=module.residual,
        precision=precision,
    )


def _forecaster(cls, hidden, layers, residual=True, seed=0):
    torch.manual_seed(seed)
    return cls(
        6, 3, 24, 5, hidden=hidden, layers=layers, residual=residual, target_index=[5, 0, 2]
    ).eval()


def _torch(module, x):
    with torch.inference_mode():
        return module(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("cls", [LSTMForecaster, GRUForecaster], ids=["lstm", "gru"])
@pytest.mark.parametrize(("hidden", "layers"), [(64, 2), (7, 1), (33, 3)])
@pytest.mark.parametrize("batch", [1, 64])
def test_fp32_kernel_and_reference_match_torch(cls, hidden, layers, batch):
    # setup
    module = _forecaster(cls, hidden, layers)
    kernel = native.Kernel(_pack(module, "fp32"))
    x = np.random.default_rng(1).normal(0, 1, (batch, 24, 6)).astype(np.float32)
    expected = _torch(module, x)
    # assert: PyTorch's gate order and GRU reset placement, the head, the residual
    np.testing.assert_allclose(reference.run(kernel.model, x), expected, atol=2e-5)
    np.testing.assert_allclose(kernel.run(x), expected, atol=2e-5)


@pytest.mark.parametrize("cls", [LSTMForecaster, GRUForecaster], ids=["lstm", "gru"])
def test_int8_kernel_stays_near_torch(cls):
    # setup
    module = _forecaster(cls, 64, 2, residual=False)
    x = np.random.default_rng(2).normal(0, 1, (64, 24, 6)).astype(np.float32)
    expected = _torch(module, x)
    # execute
    got = native.Kernel(_pack(module, "int8")).run(x)
    # assert: int8 error is a small fraction of the forecast's spread
    error = np.abs(got - expected)
    assert error.max() < 0.05 * expected.std(), (error.max(), expected.std())
    assert not np.array_equal(got, expected)  # int8 really ran
