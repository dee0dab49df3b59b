"""ARM int4 through ai-edge-quantizer: a group scale past float16's range is refused at build time,
naming the layer (LiteRT refused the inf scale only when the written file was loaded)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from edgecomp.models import build_model
from edgecomp.spec import Model
from edgecomp.targets import TargetError, get_profile
from edgecomp.targets.tflite.target import TfliteTarget
from edgecomp_runtime.engines.litert import LiteRtEngine
from helpers.testing import sine_windows, tiny_spec

pytestmark = pytest.mark.skipif(
    not TfliteTarget.is_available(), reason=TfliteTarget.missing_reason()
)
PROFILE = get_profile("arm64-gateway")


def _tcn(peak: float) -> Model:
    """A TCN whose head (a FULLY_CONNECTED of 64 inputs: int4 groups of 32) holds ``peak``."""
    spec = dataclasses.replace(tiny_spec("tcn"), hparams={"channels": 64})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = build_model(spec).eval()
    with torch.no_grad():
        module.head.weight[0, 5] = peak
    return Model(module=module, spec=spec, source="test")


def _emit(model: Model, out, **options):
    profile = dataclasses.replace(PROFILE, options={**PROFILE.options, **options})
    return TfliteTarget().emit(model, profile, out, precision="int4")


def test_a_group_scale_overflowing_float16_is_refused_naming_the_layer(tmp_path):
    with pytest.raises(TargetError, match=r"int4 layer 'head': 1 of its 12 group scales overflow"):
        _emit(_tcn(1e6), tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("options", [{"keep_int8": ["head"]}, {"int4_group_size": "channel"}])
def test_the_ways_out_the_message_names_build_and_load(tmp_path, options):
    # setup / execute: the same weight with the head int8, or int4 with float32 channel scales
    result = _emit(_tcn(1e6), tmp_path, **options)
    data = (tmp_path / result.model_file).read_bytes()
    # assert: written, loaded by LiteRT with XNNPACK, finite outputs
    spec = tiny_spec("tcn")
    x = sine_windows(4, spec.input_len, spec.horizon, spec.n_features, 2, 1).x
    manifest = {"model_file": result.model_file, "io": result.io, "recipe": {"lowering": {}}}
    out = LiteRtEngine(data, manifest, threads=1).run(x)
    assert out.shape == (4, spec.horizon, 2) and torch.isfinite(torch.from_numpy(out)).all()


def test_a_weight_just_inside_float16_scales_builds(tmp_path):
    # 7 * 60000: scale 60000 (the 7-bit-mantissa rounding stays below 65504)
    result = _emit(_tcn(7 * 60000.0), tmp_path)
    assert result.lowering["quantization"]["int4_groups"]["32"] == 1
