"""Front-end sources: module.py:factory + weights, TorchScript, ONNX; and their errors."""

import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from edgecomp.frontend import FrontendError, load_model, reference_predict, source_kind
from helpers.testing import tiny_model

FACTORY = """
from edgecomp.models import build_model
from helpers.testing import tiny_spec

def make():
    return build_model(tiny_spec("gru"))
"""


@pytest.fixture
def gru(tmp_path):
    model = tiny_model("gru", seed=3)
    (tmp_path / "net.py").write_text(FACTORY)
    return model


def test_factory_with_safetensors_weights(gru, tmp_path):
    save_file(gru.module.state_dict(), tmp_path / "w.safetensors")
    model = load_model(
        f"{tmp_path / 'net.py'}:make", weights=tmp_path / "w.safetensors", spec=gru.spec
    )
    x = np.random.default_rng(0).normal(size=(3, gru.spec.input_len, 4)).astype(np.float32)
    np.testing.assert_allclose(reference_predict(model, x), reference_predict(gru, x), atol=1e-6)


def test_factory_with_state_dict_pt(gru, tmp_path):
    torch.save(gru.module.state_dict(), tmp_path / "w.pt")
    model = load_model(f"{tmp_path / 'net.py'}:make", weights=tmp_path / "w.pt", spec=gru.spec)
    assert source_kind(f"{tmp_path / 'net.py'}:make") == "factory"
    assert model.spec == gru.spec


def test_pickle_bearing_weights_are_refused(gru, tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "w.pt").write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(ValueError, match="w.pt"):
        load_model(f"{tmp_path / 'net.py'}:make", weights=tmp_path / "w.pt", spec=gru.spec)


def test_torchscript_source(gru, tmp_path):
    x = torch.zeros(1, gru.spec.input_len, 4)
    torch.jit.trace(gru.module.eval(), x).save(str(tmp_path / "m.pt"))
    model = load_model(tmp_path / "m.pt", spec=gru.spec)
    assert source_kind(tmp_path / "m.pt") == "torchscript"
    xs = np.ones((2, gru.spec.input_len, 4), dtype=np.float32)
    np.testing.assert_allclose(reference_predict(model, xs), reference_predict(gru, xs), atol=1e-5)


def test_onnx_source(gru, tmp_path):
    pytest.importorskip("onnxruntime")
    from edgecomp.targets.onnx.target import export_onnx

    path = export_onnx(gru.module, gru.spec.input_len, 4, tmp_path / "m.onnx")
    model = load_model(path, spec=gru.spec)
    xs = np.ones((2, gru.spec.input_len, 4), dtype=np.float32)
    np.testing.assert_allclose(reference_predict(model, xs), reference_predict(gru, xs), atol=1e-4)


def test_spec_shape_mismatch_names_the_source(gru, tmp_path):
    torch.jit.trace(gru.module.eval(), torch.zeros(1, gru.spec.input_len, 4)).save(
        str(tmp_path / "m.pt")
    )
    from dataclasses import replace

    wrong = replace(gru.spec, horizon=gru.spec.horizon + 1)
    with pytest.raises(FrontendError, match="m.pt.*output shape"):
        load_model(tmp_path / "m.pt", spec=wrong)


def test_sources_need_a_spec_and_existing_files(tmp_path):
    with pytest.raises(FrontendError, match="no such file"):
        load_model(tmp_path / "absent.onnx")
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(FrontendError, match="needs a ModelSpec"):
        load_model(tmp_path / "m.onnx")
    (tmp_path / "w.bin").write_bytes(b"junk")
    with pytest.raises(FrontendError, match="not a checkpoint"):
        load_model(tmp_path / "w.bin")


@pytest.mark.target
@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_build_from_onnx_and_torchscript_sources(kind, traffic_checkpoints, traffic_path, tmp_path):
    # setup: a trained checkpoint re-expressed as a plain ONNX / TorchScript file + its spec JSON
    from click.testing import CliRunner

    import edgecomp_runtime
    from edgecomp.checkpoint import load_checkpoint
    from edgecomp.cli import main
    from edgecomp.targets.onnx.target import export_onnx

    ckpt = traffic_checkpoints["gru"]
    model = load_checkpoint(ckpt)
    example = torch.zeros(1, model.spec.input_len, model.spec.n_features)
    if kind == "onnx":
        source = export_onnx(
            model.module, model.spec.input_len, model.spec.n_features, tmp_path / "m.onnx"
        )
    else:
        source = tmp_path / "m.pt"
        torch.jit.trace(model.module.eval(), example).save(str(source))
    out = tmp_path / "a.edgepkg"
    # execute
    result = CliRunner().invoke(
        main,
        [
            "build",
            str(source),
            "--spec",
            str(ckpt / "spec.json"),
            "--data",
            str(traffic_path),
            "-p",
            "fp32",
            "-o",
            str(out),
        ],
    )
    # assert
    assert result.exit_code == 0, result.output
    built = edgecomp_runtime.load(out)
    x = np.random.default_rng(1).normal(size=(2, model.spec.input_len, 22)).astype(np.float32)
    np.testing.assert_allclose(built.run_scaled(x), reference_predict(model, x), atol=1e-4)
    assert built.manifest["recipe"]["source"] == str(source)


@pytest.mark.target
def test_build_onnx_source_with_flags_instead_of_a_spec(
    traffic_checkpoints, traffic_path, tmp_path
):
    # setup: an ONNX file and only -L/-H; features and scaling come from the data's training split
    from click.testing import CliRunner

    import edgecomp_runtime
    from edgecomp.checkpoint import load_checkpoint
    from edgecomp.cli import main
    from edgecomp.targets.onnx.target import export_onnx

    model = load_checkpoint(traffic_checkpoints["tcn"])
    spec = model.spec
    source = export_onnx(model.module, spec.input_len, spec.n_features, tmp_path / "m.onnx")
    args = ["build", str(source), "--data", str(traffic_path), "-p", "fp32", "-o"]
    flags = ["-L", str(spec.input_len), "-H", str(spec.horizon)]
    # execute
    result = CliRunner().invoke(main, [*args, str(tmp_path / "a.edgepkg"), *flags])
    # assert
    assert result.exit_code == 0, result.output
    built = edgecomp_runtime.load(tmp_path / "a.edgepkg")
    assert built.spec["arch"] == "external"
    assert built.spec["scaler"] == spec.scaler and built.features == spec.features
