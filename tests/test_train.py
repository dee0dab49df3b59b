"""Training (config, early stopping, determinism, TensorBoard), predict, and checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from edgecomp.checkpoint import (
    SPEC_FILE,
    TRAIN_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_checkpoint,
    load_state_dict_file,
    read_train_info,
    save_checkpoint,
)
from edgecomp.data.windows import Windows
from edgecomp.train import TrainConfig, predict, train_module
from helpers.testing import sine_windows, tiny_model, tiny_spec

torch.set_num_threads(1)

L, H, F, F_OUT = 16, 3, 2, 1


@pytest.fixture(scope="module")
def windows() -> tuple[Windows, Windows]:
    w = sine_windows(200, L, H, F, F_OUT, seed=0)
    return w.take(slice(0, 150)), w.take(slice(160, 200))


def _model(arch: str = "gru", seed: int = 0):
    return tiny_model(arch, seed=seed, input_len=L, horizon=H, n_features=F, n_targets=F_OUT)


def _val_mse(module: nn.Module, val: Windows) -> float:
    return float(np.mean((predict(module, val.x) - val.y) ** 2))


# TrainConfig


def test_config_json_round_trip():
    config = TrainConfig(arch="tcn", hparams={"channels": 4}, epochs=3, lr=0.01, loss="mae")
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig.from_dict({}) == TrainConfig()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("batch_size", 2.0),
        ("lr", 0.0),
        ("lr", float("nan")),
        ("loss", "huber"),
        ("patience", True),
        ("seed", -1),
        ("threads", 0),
        ("weight_decay", -0.1),
        ("arch", ""),
        ("hparams", [1]),
    ],
)
def test_config_refuses_bad_values(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field} must be"):
        TrainConfig(**{field: value})


def test_config_from_dict_names_unknown_fields():
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['epoch'\]"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="expected a JSON object"):
        TrainConfig.from_dict([1])


# train_module


@pytest.mark.parametrize("arch", ["lstm", "gru", "tcn"])
def test_training_learns_the_sine(arch, windows):
    # setup
    train, val = windows
    model = _model(arch)
    untrained = _val_mse(model.module, val)
    calls = []
    # execute
    result = train_module(
        model.module,
        train,
        val,
        TrainConfig(epochs=6, batch_size=16, lr=1e-2),
        on_epoch=lambda *args: calls.append(args),
    )
    # assert
    assert result.best_val_loss < 0.2 * untrained
    assert _val_mse(result.module, val) == pytest.approx(result.best_val_loss, rel=1e-4)
    assert [c[0] for c in calls] == [h["epoch"] for h in result.history] == list(range(1, 7))
    assert calls[-1][1:] == (result.history[-1]["train_loss"], result.history[-1]["val_loss"])
    assert not result.module.training
    assert result.seconds > 0


class _Bias(nn.Module):
    """Predicts one learnable constant; with val targets opposite to train ones, val loss rises."""

    def __init__(self) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.tensor(-1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b.expand(x.shape[0], H, F_OUT)


def _constant_windows(n: int, target: float) -> Windows:
    return Windows(
        np.zeros((n, L, F), np.float32), np.full((n, H, F_OUT), target, np.float32), np.arange(n)
    )


def test_early_stopping_restores_the_best_weights():
    # setup: val loss is lowest after epoch 1 and rises after
    module = _Bias()
    train, val = _constant_windows(32, 1.0), _constant_windows(8, -1.0)
    # execute
    result = train_module(module, train, val, TrainConfig(epochs=50, patience=3, lr=0.05))
    # assert
    assert len(result.history) == 4
    losses = [h["val_loss"] for h in result.history]
    assert losses == sorted(losses)
    assert result.best_epoch == 1
    assert result.best_val_loss == losses[0]
    assert _val_mse(module, val) == pytest.approx(losses[0], rel=1e-6)


def test_same_seed_same_weights(windows):
    # setup
    train, val = windows
    config = TrainConfig(epochs=2, batch_size=16, lr=1e-2, seed=3)
    # execute
    runs = [
        train_module(_model().module, train, val, c).module.state_dict()
        for c in (config, config, TrainConfig(**{**config.to_dict(), "seed": 4}))
    ]
    # assert
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_tensorboard_events_written(windows, tmp_path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator", reason="tensorboard missing"
    )
    # setup
    train, val = windows
    # execute
    result = train_module(
        _model().module, train, val, TrainConfig(epochs=2, batch_size=32), log_dir=tmp_path / "tb"
    )
    # assert
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    acc = event_accumulator.EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss/val")] == [1, 2]
    assert acc.Scalars("loss/train")[1].value == pytest.approx(result.history[1]["train_loss"])


def test_training_refuses_mismatched_horizon(windows):
    train, val = windows
    model = tiny_model("lstm", input_len=L, horizon=H + 1, n_features=F, n_targets=F_OUT)
    with pytest.raises(
        ValueError,
        match=r"module output \[batch, 4, 1\] does not match the "
        r"targets \[batch, 3, 1\]",
    ):
        train_module(model.module, train, val, TrainConfig(epochs=1))


def test_training_refuses_empty_windows(windows):
    train, val = windows
    with pytest.raises(ValueError, match="val windows are empty"):
        train_module(_model().module, train, val.take(slice(0, 0)), TrainConfig(epochs=1))


def test_training_reports_divergence(windows):
    train, val = windows
    train = Windows(train.x * 1e30, train.y * 1e30, train.starts)
    with pytest.raises(ValueError, match="diverged at epoch 1"):
        train_module(_model().module, train, val, TrainConfig(epochs=2, lr=1.0))


# predict


def test_predict_matches_module_and_keeps_mode(windows):
    # setup
    _, val = windows
    model = _model("tcn")
    model.module.train()
    # execute
    small = predict(model.module, val.x.astype(np.float64), batch_size=7)
    # assert
    with torch.no_grad():
        ref = model.module.eval()(torch.from_numpy(val.x)).numpy()
    assert small.dtype == np.float32
    assert small.shape == (len(val), H, F_OUT)
    np.testing.assert_allclose(small, ref, atol=1e-6)
    model.module.train()
    predict(model.module, val.x)
    assert model.module.training


def test_predict_refuses_bad_shape():
    with pytest.raises(ValueError, match=r"x must be \[N, L, F\]"):
        predict(_model().module, np.zeros((L, F), np.float32))


# checkpoints


@pytest.mark.parametrize("arch", ["lstm", "gru", "tcn"])
def test_checkpoint_round_trip(arch, tmp_path):
    # setup
    model = tiny_model(arch, seed=5)
    x = torch.randn(3, 8, 4)
    history = [{"epoch": 1, "train_loss": 0.5, "val_loss": 0.6}]
    # execute
    out = save_checkpoint(
        model, tmp_path / "ckpt", history=history, train_config=TrainConfig(arch=arch, epochs=1)
    )
    loaded = load_checkpoint(out / SPEC_FILE if arch == "gru" else out)
    # assert
    assert sorted(p.name for p in out.iterdir()) == [WEIGHTS_FILE, SPEC_FILE, TRAIN_FILE]
    assert loaded.spec == model.spec
    with torch.no_grad():
        assert torch.equal(loaded.module(x), model.module(x))
    info = read_train_info(out)
    assert info["history"] == history
    assert TrainConfig.from_dict(info["config"]) == TrainConfig(arch=arch, epochs=1)


@pytest.fixture
def ckpt(tmp_path):
    return save_checkpoint(tiny_model("lstm"), tmp_path / "ckpt")


def _rewrite_weights(ckpt, edit) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(ckpt / WEIGHTS_FILE))
    edit(state)
    save_file(state, str(ckpt / WEIGHTS_FILE))


def test_checkpoint_missing_files(ckpt, tmp_path):
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'nowhere' / SPEC_FILE}: no such file"):
        load_checkpoint(tmp_path / "nowhere")
    (ckpt / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"{ckpt / WEIGHTS_FILE}: no such weights file"):
        load_checkpoint(ckpt)


def test_checkpoint_bad_spec(ckpt):
    (ckpt / SPEC_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match=f"{ckpt / SPEC_FILE}.*cannot read spec JSON"):
        load_checkpoint(ckpt)
    (ckpt / SPEC_FILE).write_text(json.dumps({**tiny_spec().to_dict(), "arch": "external"}))
    with pytest.raises(CheckpointError, match=f"{ckpt / SPEC_FILE}: unknown architecture"):
        load_checkpoint(ckpt)


def test_checkpoint_missing_key(ckpt):
    _rewrite_weights(ckpt, lambda s: s.pop("head.bias"))
    with pytest.raises(CheckpointError, match=f"{WEIGHTS_FILE}: missing weight 'head.bias'"):
        load_checkpoint(ckpt)


def test_checkpoint_unexpected_key(ckpt):
    _rewrite_weights(ckpt, lambda s: s.update(extra=torch.zeros(1)))
    with pytest.raises(CheckpointError, match=f"{WEIGHTS_FILE}: unexpected weight 'extra'"):
        load_checkpoint(ckpt)


def test_checkpoint_wrong_shape(ckpt):
    _rewrite_weights(ckpt, lambda s: s.update({"head.bias": torch.zeros(7)}))
    with pytest.raises(
        CheckpointError,
        match=r"weight 'head.bias' has shape \[7\], the model "
        r"expects \[6\]",
    ):
        load_checkpoint(ckpt)


def test_checkpoint_corrupt_weights(ckpt):
    (ckpt / WEIGHTS_FILE).write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(ckpt)


def test_state_dict_file_from_torch(tmp_path):
    module = tiny_model("gru").module
    torch.save(module.state_dict(), tmp_path / "w.pt")
    state = load_state_dict_file(tmp_path / "w.pt")
    assert state.keys() == module.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in module.state_dict().items())


def test_state_dict_file_refuses_pickled_objects(tmp_path):
    torch.save(tiny_model("gru").module, tmp_path / "whole.pt")
    with pytest.raises(CheckpointError, match=r"whole\.pt: refused by torch\.load\(weights_only"):
        load_state_dict_file(tmp_path / "whole.pt")


def test_state_dict_file_refuses_non_tensors(tmp_path):
    torch.save({"state": {"w": torch.zeros(1)}, "epoch": 3}, tmp_path / "nested.pth")
    with pytest.raises(CheckpointError, match=r"nested\.pth: key 'state' holds dict, not a tensor"):
        load_state_dict_file(tmp_path / "nested.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"list\.pt: expected a dict"):
        load_state_dict_file(tmp_path / "list.pt")
