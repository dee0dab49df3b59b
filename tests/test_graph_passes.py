"""Compression passes on the graph forecaster: channel pruning (exact), distillation student."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgecomp.frontend import reference_predict
from edgecomp.passes.base import count_params
from edgecomp.passes.distill import DistillConfig, student_model
from edgecomp.passes.prune import PruneConfig, prune_model
from helpers.testing import sine_windows, tiny_model

L, H, F = 8, 3, 5


def _teacher():
    return tiny_model("stgnn", input_len=L, horizon=H, n_features=F, n_targets=F)


def _zero_removed(module: torch.nn.Module, kept: dict[str, list[int]]) -> None:
    """Zero the weights producing the removed channels (the pruned model must equal this)."""
    ch = module.channels
    gone = sorted(set(range(ch)) - set(kept["residual"]))
    with torch.no_grad():
        module.inp.weight[gone] = 0
        module.inp.bias[gone] = 0
        for i, layer in enumerate(module.layers):
            layer.mix.weight[gone] = 0
            layer.mix.bias[gone] = 0
            dropped = sorted(set(range(ch)) - set(kept[f"layers.{i}.gated"]))
            for block in range(1 + layer.n_supports):
                layer.mix.weight[:, [j + block * ch for j in dropped]] = 0


@pytest.mark.parametrize("importance", ["l2", "taylor"])
def test_pruned_graph_model_equals_the_original_with_removed_channels_zeroed(importance):
    # setup
    teacher = _teacher()
    windows = sine_windows(32, L, H, F, F)
    # execute
    pruned, stats = prune_model(
        teacher, PruneConfig(ratio=0.5, importance=importance), (windows.x, windows.y)
    )
    # assert
    assert stats["width_before"] == 16 and stats["width_after"] == 8
    assert pruned.module.channels == 8
    assert count_params(pruned.module) < 0.5 * count_params(teacher.module)
    _zero_removed(teacher.module, stats["kept"])
    teacher.module.eval()
    np.testing.assert_allclose(
        reference_predict(pruned, windows.x), reference_predict(teacher, windows.x), atol=1e-5
    )


def test_prune_to_a_parameter_budget():
    teacher = _teacher()
    limit = count_params(teacher.module) // 3
    pruned, _ = prune_model(teacher, PruneConfig(max_params=limit))
    assert count_params(pruned.module) <= limit


def test_graph_student_keeps_the_teacher_layout_and_graph():
    teacher = _teacher()
    student = student_model(teacher, DistillConfig(student="stgnn", hparams={"channels": 4}))
    assert student.spec.layout == teacher.spec.layout and student.module.channels == 4
    assert count_params(student.module) < count_params(teacher.module)
    x = torch.from_numpy(sine_windows(4, L, H, F, F).x)
    assert student.module.eval()(x).shape == (4, H, F)


def test_tune_space_offers_graph_students_from_the_registry():
    from edgecomp.targets import get_profile
    from edgecomp.tune.space import default_space

    students = default_space(get_profile("x86-64-avx2"))["student"]
    assert {"stgnn-16", "stgnn-32"} <= set(students)


def test_pruning_keeps_highway_and_node_bias_exact():
    # setup: the residual stream's per-node offset is pruned with its channels
    import dataclasses

    from edgecomp.models import build_model
    from edgecomp.spec import Model
    from helpers.testing import tiny_spec

    spec = tiny_spec("stgnn", input_len=L, horizon=H, n_features=F, n_targets=F)
    spec = dataclasses.replace(spec, hparams={**spec.hparams, "highway": True, "node_bias": True})
    torch.manual_seed(0)
    teacher = Model(build_model(spec).eval(), spec, "test")
    with torch.no_grad():
        teacher.module.node_bias.normal_()
    windows = sine_windows(32, L, H, F, F)
    # execute
    pruned, stats = prune_model(teacher, PruneConfig(ratio=0.5), (windows.x, windows.y))
    # assert
    assert tuple(pruned.module.node_bias.shape) == (1, 8, F, 1)
    _zero_removed(teacher.module, stats["kept"])
    gone = sorted(set(range(16)) - set(stats["kept"]["residual"]))
    with torch.no_grad():
        teacher.module.node_bias[:, gone] = 0
    teacher.module.eval()
    np.testing.assert_allclose(
        reference_predict(pruned, windows.x), reference_predict(teacher, windows.x), atol=1e-5
    )


def test_graph_model_builds_int4_on_x86(tmp_path):
    # setup: a tiny graph model (highway on) on real bike-share stations, 6 of them late
    pytest.importorskip("onnxruntime")
    from pathlib import Path

    import edgecomp_runtime
    from edgecomp.data import DataConfig, prepare
    from edgecomp.models import build_model, complete_spec, resolve_hparams
    from edgecomp.pipeline import BuildConfig, build
    from edgecomp.spec import Model, ModelSpec

    late = Path(__file__).parent / "data" / "bixi_late_start.csv"
    stations = tuple(c for c in late.read_text().splitlines()[0].split(",") if c[:3] == "st_")
    dataset = prepare(late, DataConfig(14, 7, split=(0.6, 0.2, 0.2), targets=stations))
    hparams = resolve_hparams("stgnn", {"channels": 16, "highway": True})
    hparams["globals"] = ["mean_temp_c", "holiday"]
    spec = complete_spec(ModelSpec(arch="stgnn", hparams=hparams, **dataset.spec_fields()))
    torch.manual_seed(0)
    model = Model(build_model(spec).eval(), spec, "test")
    # execute
    fp32 = build(model, dataset, BuildConfig(precision="fp32"), tmp_path / "fp32").path
    int4 = build(model, dataset, BuildConfig(precision="int4"), tmp_path / "int4").path
    runtime = edgecomp_runtime.load(int4)
    out = runtime.predict(dataset.raw_inputs("test", imputed=True))
    # assert: int4 layers recorded, forecasts near torch's (within 5 % of the mean target)
    layers = runtime.manifest["layers"]
    assert any(layer["precision"] == "int4" for layer in layers), layers
    ref = dataset.unscale_targets(reference_predict(model, dataset.test.x))
    assert np.abs(out - ref).mean() < 0.05 * np.abs(ref).mean()
    assert int4.stat().st_size < fp32.stat().st_size
