"""Structured pruning: the pruned model is the original restricted to the kept units."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from edgecomp.checkpoint import load_checkpoint, save_checkpoint
from edgecomp.models import build_model
from edgecomp.passes import PassError, count_params, make_pass
from edgecomp.passes.prune import PruneConfig, prune_model, target_width
from edgecomp.passes.prune_rnn import GATES
from edgecomp.spec import Model
from helpers.testing import sine_windows, tiny_spec

HPARAMS = {
    "lstm": {"hidden": 12, "layers": 2},
    "gru": {"hidden": 10, "layers": 3},
    "tcn": {"channels": 12},
}


def _model(arch: str, seed: int = 0) -> Model:
    spec = replace(tiny_spec(arch, n_features=5), hparams=HPARAMS[arch])
    torch.manual_seed(seed)
    return Model(module=build_model(spec).eval(), spec=spec)


def _calibration():
    w = sine_windows(24, 8, 3, 5, 2)
    return w.x, w.y


def _zeroed(model: Model, kept: dict[str, list[int]]) -> torch.nn.Module:
    """A copy of the original whose removed units have every producing weight zeroed."""
    module = copy.deepcopy(model.module)
    params = dict(module.named_parameters())
    with torch.no_grad():
        for group, keep in kept.items():
            if group.startswith("rnn.l"):
                k, rnn = int(group[5:]), module.rnn
                hidden, gates = rnn.hidden_size, GATES[type(rnn)]
                removed = [j for j in range(hidden) if j not in keep]
                rows = [g * hidden + j for g in range(gates) for j in removed]
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    params[f"rnn.{kind}_l{k}"][rows] = 0
            else:
                for conv in group.split("+"):
                    removed = [j for j in range(params[f"{conv}.weight"].shape[0]) if j not in keep]
                    params[f"{conv}.weight"][removed] = 0
                    params[f"{conv}.bias"][removed] = 0
    return module


@pytest.mark.parametrize("arch", ["lstm", "gru", "tcn"])
@pytest.mark.parametrize("importance", ["l1", "l2", "taylor"])
def test_pruned_equals_original_restricted_to_kept_units(arch, importance):
    # setup
    model, (x, y) = _model(arch), _calibration()
    # execute
    pruned, stats = prune_model(model, PruneConfig(ratio=0.5, importance=importance), (x, y))
    # assert
    xt = torch.from_numpy(x)
    with torch.no_grad():
        out, ref, full = pruned.module(xt), _zeroed(model, stats["kept"])(xt), model.module(xt)
    assert out.shape == full.shape == (24, 3, 2)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert (out - full).abs().max() > 1e-3  # the removed units did matter
    width = HPARAMS[arch][stats["hparam"]] // 2
    assert stats["width_after"] == width
    assert all(len(k) == width and k == sorted(k) for k in stats["kept"].values())
    assert count_params(pruned.module) < count_params(model.module)


def test_recurrent_shapes_after_pruning():
    model = _model("lstm")
    pruned, _ = prune_model(model, PruneConfig(ratio=0.75), _calibration())
    state = pruned.module.state_dict()
    assert state["rnn.weight_ih_l0"].shape == (4 * 3, 5)
    assert state["rnn.weight_hh_l0"].shape == (4 * 3, 3)
    assert state["rnn.weight_ih_l1"].shape == (4 * 3, 3)
    assert state["head.weight"].shape == (3 * 2, 3)


def test_budgets_by_params_and_bytes():
    model = _model("gru")
    limit = count_params(model.module) // 2
    by_params, _ = prune_model(model, PruneConfig(max_params=limit), _calibration())
    assert count_params(by_params.module) <= limit
    wider = replace(
        by_params.spec,
        hparams={**by_params.spec.hparams, "hidden": 1 + by_params.spec.hparams["hidden"]},
    )
    assert count_params(build_model(wider)) > limit  # the widest width that fits
    assert (
        target_width(model.spec, PruneConfig(max_bytes=4 * limit))
        == by_params.spec.hparams["hidden"]
    )


def test_unmeetable_budget_names_the_limit():
    with pytest.raises(ValueError, match="no width fits 10 parameters"):
        target_width(_model("lstm").spec, PruneConfig(max_params=10))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "set exactly one of ratio"),
        ({"ratio": 0.5, "max_params": 9}, "set exactly one"),
        ({"ratio": 1.0}, "'ratio' must be a number in"),
        ({"ratio": 0.5, "importance": "l3"}, "unknown importance 'l3'"),
        ({"ratio": 0.5, "sparsity": 0.1}, "unknown key 'sparsity'"),
    ],
)
def test_bad_config_names_the_key(options, message):
    with pytest.raises(PassError, match=message):
        make_pass("prune", options, where="recipe.toml: passes[0]")


def test_pruned_model_round_trips_through_a_checkpoint(tmp_path):
    pruned, _ = prune_model(_model("tcn"), PruneConfig(ratio=0.5), _calibration())
    save_checkpoint(pruned, tmp_path / "ck")
    loaded = load_checkpoint(tmp_path / "ck")
    xt = torch.from_numpy(_calibration()[0])
    assert loaded.spec.hparams["channels"] == 6
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(xt), pruned.module(xt), atol=0, rtol=0)


def test_pruned_model_exports_to_onnx(tmp_path):
    from edgecomp.targets.onnx.target import export_onnx

    pruned, _ = prune_model(_model("lstm"), PruneConfig(ratio=0.5), _calibration())
    path = tmp_path / "m.onnx"
    export_onnx(pruned.module, 8, 5, path)
    import onnxruntime as ort

    x = _calibration()[0]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        ref = pruned.module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-5)


def _profile_per_backend() -> list:
    """One profile per backend; backends other than ONNX take longer to build: marked slow."""
    from edgecomp.targets import list_profiles

    first: dict[str, str] = {}
    for name, profile in sorted(list_profiles().items()):
        first.setdefault(profile.backend, name)
    return [
        pytest.param(name, marks=() if backend == "onnx" else pytest.mark.slow)
        for backend, name in sorted(first.items())
    ]


@pytest.mark.parametrize("profile", _profile_per_backend())
def test_pruned_model_builds_for_every_available_target(
    profile, tmp_path, traffic_checkpoints, traffic_path
):
    # setup
    from edgecomp.pipeline import BuildConfig, build
    from edgecomp.targets import get_profile, get_target
    from edgecomp.workflow import dataset_for

    target_cls = get_target(get_profile(profile).backend)
    if not target_cls.is_available():
        pytest.skip(f"{profile}: {target_cls.missing_reason()}")
    original = load_checkpoint(traffic_checkpoints["tcn"])
    dataset = dataset_for(original.spec, traffic_path)
    pruned, _ = prune_model(original, PruneConfig(ratio=0.5), (dataset.train.x, dataset.train.y))
    # execute
    result = build(pruned, dataset, BuildConfig(target=profile, precision="fp32"), tmp_path / "a")
    # assert
    metrics = result.manifest["metrics"]
    assert result.manifest["spec"]["hparams"]["channels"] == 8
    assert metrics["parity"]["max_abs_diff"] < 1e-3


def test_magnitude_pruning_changes_zip_size_not_onnx_size(
    tmp_path, traffic_checkpoints, traffic_path
):
    # setup
    from edgecomp.passes import PassContext, run_passes
    from edgecomp.targets.onnx.target import export_onnx
    from edgecomp.workflow import dataset_for

    model = load_checkpoint(traffic_checkpoints["lstm"])
    ctx = PassContext(dataset_for(model.spec, traffic_path))
    # execute
    masked, [record] = run_passes(model, [make_pass("magnitude", {"sparsity": 0.5})], ctx)
    # assert
    stats = record["measured"]["stats"]
    weight = dict(masked.module.named_parameters())["rnn.weight_hh_l0"]
    assert float((weight == 0).float().mean()) == pytest.approx(0.5, abs=0.01)
    assert stats["zip_bytes_after"] < stats["zip_bytes_before"]
    assert record["measured"]["after"]["params"] == record["measured"]["before"]["params"]
    sizes = [
        export_onnx(m.module, 16, 22, tmp_path / f"{i}.onnx").stat().st_size
        for i, m in enumerate((model, masked))
    ]
    assert sizes[0] == sizes[1]


def test_tcn_width_equal_to_the_inputs_keeps_one_channel_less():
    # a TCN as wide as its inputs has an identity skip, which cannot hold the original 1x1 conv
    spec = replace(tiny_spec("tcn", n_features=4), hparams={"channels": 8})
    assert target_width(spec, PruneConfig(ratio=0.5)) == 3
    assert target_width(spec, PruneConfig(ratio=0.25)) == 6
