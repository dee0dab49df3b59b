"""Forecasters: shapes, registry, TCN causality, ONNX export; and tests/helpers/testing.py."""

from __future__ import annotations

import dataclasses
import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from edgecomp.models import (
    MODELS,
    ModelError,
    TCNForecaster,
    auto_dilations,
    build_model,
    default_hparams,
    receptive_field,
    register_model,
    resolve_hparams,
)
from helpers.testing import assert_close, sine_windows, tiny_model, tiny_spec

torch.set_num_threads(1)

ARCHS = ["lstm", "gru", "tcn"]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(
    ("input_len", "horizon", "n_features", "n_targets"), [(8, 3, 4, 2), (1, 1, 1, 1), (24, 6, 3, 3)]
)
@pytest.mark.parametrize("batch", [1, 5])
def test_forward_shape(arch, input_len, horizon, n_features, n_targets, batch):
    # setup
    model = tiny_model(
        arch, input_len=input_len, horizon=horizon, n_features=n_features, n_targets=n_targets
    )
    x = torch.randn(batch, input_len, n_features)
    # execute
    out = model.module(x)
    # assert
    assert out.shape == (batch, horizon, n_targets)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("arch", ARCHS)
def test_build_model_uses_defaults(arch):
    spec = tiny_spec(arch)
    spec = type(spec)(**{**spec.to_dict(), "hparams": {}})
    module = build_model(spec)
    if arch == "tcn":
        assert module.blocks[0].conv1.out_channels == 32
        assert module.blocks[0].conv1.kernel_size == (3,)
    else:
        assert (module.rnn.hidden_size, module.rnn.num_layers) == (64, 2)
        assert module.rnn.batch_first


def test_default_hparams():
    rnn = {"hidden": 64, "layers": 2, "dropout": 0.0, "residual": True}
    assert default_hparams("lstm") == rnn
    assert default_hparams("gru") == rnn
    assert default_hparams("tcn") == {
        "channels": 32,
        "kernel": 3,
        "dilations": None,
        "residual": True,
    }
    default_hparams("lstm")["hidden"] = 1  # a copy: the registry's defaults stay put
    assert default_hparams("lstm")["hidden"] == 64


def test_hparams_override_defaults():
    assert resolve_hparams("gru", {"hidden": 5}) == {
        "hidden": 5,
        "layers": 2,
        "dropout": 0.0,
        "residual": True,
    }
    spec = tiny_spec("gru")
    module = build_model(type(spec)(**{**spec.to_dict(), "hparams": {"hidden": 5, "layers": 3}}))
    assert (module.rnn.hidden_size, module.rnn.num_layers) == (5, 3)


def test_unknown_arch_lists_available():
    with pytest.raises(
        ModelError, match=r"unknown architecture 'transformer'.*'gru'.*'lstm'.*'tcn'"
    ):
        build_model(tiny_spec("transformer"))


def test_unknown_hparam_is_named():
    spec = tiny_spec("lstm")
    spec = type(spec)(**{**spec.to_dict(), "hparams": {"hidden": 8, "hiden_size": 3}})
    with pytest.raises(ModelError, match=r"\['hiden_size'\].*'lstm'"):
        build_model(spec)


@pytest.mark.parametrize(
    ("arch", "hparams", "name"),
    [
        ("lstm", {"hidden": 0}, "hidden"),
        ("gru", {"layers": 1.5}, "layers"),
        ("lstm", {"dropout": 1.0}, "dropout"),
        ("tcn", {"kernel": True}, "kernel"),
        ("tcn", {"kernel": 1}, "kernel"),
        ("tcn", {"dilations": []}, "dilations"),
        ("tcn", {"dilations": [1, -2]}, "dilations"),
    ],
)
def test_invalid_hparam_value_is_named(arch, hparams, name):
    spec = tiny_spec(arch)
    spec = type(spec)(**{**spec.to_dict(), "hparams": hparams})
    with pytest.raises(ModelError, match=f"'{name}'"):
        build_model(spec)


def test_register_model_refuses_duplicates_and_missing_defaults():
    with pytest.raises(ModelError, match="'lstm' is already registered"):
        register_model("lstm")(MODELS["gru"])
    with pytest.raises(ModelError, match="must define DEFAULTS"):
        register_model("no-defaults")(nn.Identity)
    assert "no-defaults" not in MODELS


@pytest.mark.parametrize("input_len", [1, 5, 8, 13, 48, 200])
@pytest.mark.parametrize("kernel", [2, 3, 5])
def test_auto_dilations_cover_the_window(input_len, kernel):
    dilations = auto_dilations(input_len, kernel)
    assert receptive_field(kernel, dilations) >= input_len
    assert dilations == [2**i for i in range(len(dilations))]
    if len(dilations) > 1:  # the smallest stack that covers it
        assert receptive_field(kernel, dilations[:-1]) < input_len


def test_tcn_is_causal():
    # setup: record each block's output features [B, C, L]
    torch.manual_seed(0)
    module = TCNForecaster(n_features=3, n_targets=2, input_len=16, horizon=2, channels=6).eval()
    feats: list[torch.Tensor] = []
    for block in module.blocks:
        block.register_forward_hook(lambda _m, _i, out: feats.append(out.detach()))
    x = torch.randn(2, 16, 3)
    x_changed = x.clone()
    t = 9
    x_changed[:, t] += 5.0
    # execute
    module(x)
    before = list(feats)
    feats.clear()
    module(x_changed)
    # assert: nothing before t moves; step t does
    for ref, new in zip(before, feats, strict=True):
        assert torch.equal(ref[:, :, :t], new[:, :, :t])
        assert not torch.allclose(ref[:, :, t:], new[:, :, t:])


@pytest.mark.parametrize("arch", ARCHS)
def test_output_sees_the_first_step(arch):
    # The TCN's receptive field covers L; the RNNs see everything.
    model = tiny_model(arch, input_len=24)
    x = torch.randn(1, 24, 4)
    x_changed = x.clone()
    x_changed[:, 0] += 5.0
    with torch.no_grad():
        assert not torch.allclose(model.module(x), model.module(x_changed))


def _export(module: nn.Module, input_len: int, n_features: int) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the exporter's notes (tracing, RNN batch, Pad folding)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.randn(2, input_len, n_features),),
            buf,
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )
    return buf.getvalue()


NATIVE_OP = {"lstm": "LSTM", "gru": "GRU", "tcn": "Conv"}


@pytest.mark.parametrize("arch", ARCHS)
def test_onnx_export_native_ops_and_parity(arch):
    onnx = pytest.importorskip("onnx", reason="onnx not installed (extra [onnx])")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (extra [onnx])")
    # setup
    model = tiny_model(arch, input_len=12, horizon=3, n_features=4, n_targets=2)
    # execute
    data = _export(model.module, 12, 4)
    # assert: native ops for ORT's per-op-type quantization
    ops = {node.op_type for node in onnx.load_from_string(data).graph.node}
    assert {NATIVE_OP[arch], "Gemm"} <= ops
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 12, 4)).astype(np.float32)
        (out,) = session.run(None, {"x": x})
        with torch.no_grad():
            ref = model.module(torch.from_numpy(x)).numpy()
        assert float(np.abs(out - ref).max()) < 1e-4


def test_tcn_simplifies_to_plain_ops():
    onnx = pytest.importorskip("onnx", reason="onnx not installed (extra [onnx])")
    onnxsim = pytest.importorskip("onnxsim", reason="onnxsim not installed (extra [onnx])")
    model = tiny_model("tcn", input_len=12)
    simplified, ok = onnxsim.simplify(onnx.load_from_string(_export(model.module, 12, 4)))
    assert ok
    ops = {node.op_type for node in simplified.graph.node}
    # Slice: the residual path reads the last input step
    assert ops <= {"Transpose", "Pad", "Conv", "Relu", "Add", "Gather", "Gemm", "Reshape", "Slice"}


# test helpers (tests/helpers/testing.py)


def test_tiny_spec_is_valid_and_small():
    spec = tiny_spec("tcn", input_len=5, horizon=2, n_features=3, n_targets=1)
    assert (spec.input_len, spec.horizon, spec.features, spec.targets) == (
        5,
        2,
        ["f0", "f1", "f2"],
        ["f0"],
    )
    assert spec.scaler["mean"] == [0.0, 10.0, 20.0]
    assert spec.scaler["std"] == [1.0, 2.0, 3.0]
    assert spec.hparams == {"channels": 8}


def test_tiny_model_is_seeded_and_keeps_global_rng():
    state = torch.random.get_rng_state()
    a, b, c = tiny_model("lstm", seed=1), tiny_model("lstm", seed=1), tiny_model("lstm", seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    weights = [m.module.rnn.weight_ih_l0 for m in (a, b, c)]
    assert torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0], weights[2])
    assert not a.module.training


def test_sine_windows_are_consistent():
    w = sine_windows(10, input_len=6, horizon=2, n_features=3, n_targets=2, seed=4)
    assert (w.x.shape, w.y.shape, w.starts.tolist()) == ((10, 6, 3), (10, 2, 2), list(range(10)))
    assert w.x.dtype == w.y.dtype == np.float32
    # stride 1: window i's targets are the inputs of window i + L
    np.testing.assert_array_equal(w.y[0], w.x[6, :2, :2])
    assert not np.array_equal(w.x, sine_windows(10, 6, 2, 3, 2, seed=5).x)


def test_sine_windows_refuses_bad_sizes():
    with pytest.raises(ValueError, match="n_targets=4"):
        sine_windows(10, 6, 2, n_features=3, n_targets=4)


def test_assert_close_tolerances_per_dtype():
    ref = np.ones((2, 3), np.float32)
    assert_close(ref, ref + 5e-5)
    assert_close(torch.from_numpy(ref), ref + 5e-3, dtype="fp16")
    with pytest.raises(AssertionError, match="max abs diff"):
        assert_close(ref, ref + 5e-3)
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_close(ref, ref[:1])
    assert_close(ref, ref + 5e-3, atol=1e-2)
    with pytest.raises(ValueError, match="unknown dtype 'bf8'"):
        assert_close(ref, ref, dtype="bf8")


@pytest.mark.parametrize("arch", ["lstm", "gru", "tcn"])
def test_residual_head_starts_from_the_last_observed_targets(arch):
    # setup: targets are features 2 and 0; a zeroed head leaves only the residual path
    spec = tiny_spec(arch, n_features=4, n_targets=2)
    spec = dataclasses.replace(spec, targets=[spec.features[2], spec.features[0]])
    module = build_model(spec).eval()
    torch.nn.init.zeros_(module.head.weight)
    torch.nn.init.zeros_(module.head.bias)
    x = torch.randn(3, spec.input_len, 4)
    # execute
    with torch.no_grad():
        y = module(x)
        plain = build_model(dataclasses.replace(spec, hparams={"residual": False}))
        torch.nn.init.zeros_(plain.head.weight)
        torch.nn.init.zeros_(plain.head.bias)
        y_plain = plain.eval()(x)
    # assert
    expected = x[:, -1, [2, 0]].unsqueeze(1).expand(3, spec.horizon, 2)
    torch.testing.assert_close(y, expected)
    assert torch.count_nonzero(y_plain) == 0
    assert "target_index" not in module.state_dict()


def test_the_clis_architecture_names_are_the_registry():
    from edgecomp.archs import ARCHS
    from edgecomp.models import MODELS

    assert sorted(ARCHS) == sorted(MODELS)
