"""ARM int8 with option calibration "dynamic": int8 weights, activations quantized at run time.

The ladder's calibration rung tries it when one static activation scale cannot hold the data
(the weather TCN's full int8 build was +33.5 % at its first step, the dynamic one +0.16 %).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from edgecomp.ladder import calibration_variants
from edgecomp.targets import TargetError, get_profile
from edgecomp.targets.tflite.target import TfliteTarget
from edgecomp_runtime.engines.litert import LiteRtEngine
from helpers.testing import assert_close, sine_windows, tiny_model, tiny_spec

pytestmark = pytest.mark.skipif(
    not TfliteTarget.is_available(), reason=TfliteTarget.missing_reason()
)
PROFILE = get_profile("arm64-gateway")


def _windows(n: int = 32, seed: int = 0):
    spec = tiny_spec("tcn")
    return sine_windows(n, spec.input_len, spec.horizon, spec.n_features, 2, seed).x


def test_the_ladder_tries_dynamic_activations_for_arm_int8():
    variants = calibration_variants(TfliteTarget.capabilities, "int8")
    assert {"calibration": "dynamic"} in variants


def test_int8_with_dynamic_calibration_is_int8_weights_and_float_io(tmp_path):
    # setup
    model = tiny_model("tcn")
    profile = dataclasses.replace(PROFILE, options={**PROFILE.options, "calibration": "dynamic"})
    # execute
    result = TfliteTarget().emit(model, profile, tmp_path, precision="int8", calibration=_windows())
    data = (tmp_path / result.model_file).read_bytes()
    # assert: every compute layer int8 with dynamic activations; float I/O; matches torch
    assert result.layers and all(
        (la["precision"], la["method"]) == ("int8", "dynamic") for la in result.layers
    )
    assert result.io["inputs"][0]["dtype"] == "float32" and "scale" not in result.io["inputs"][0]
    assert result.lowering["quantization"]["recipe"]["mode"] == "dynamic"
    assert result.lowering["quantization"]["calibration"] == "dynamic"
    manifest = {"model_file": result.model_file, "io": result.io, "recipe": {"lowering": {}}}
    x = _windows(16, seed=3)
    with torch.no_grad():
        expected = model.module(torch.from_numpy(x)).numpy()
    assert_close(expected, LiteRtEngine(data, manifest, threads=1).run(x), dtype="int8")


def test_an_unknown_calibration_is_refused_naming_the_option(tmp_path):
    profile = dataclasses.replace(PROFILE, options={**PROFILE.options, "calibration": "sometimes"})
    with pytest.raises(TargetError, match="option 'calibration' must be one of"):
        TfliteTarget().emit(
            tiny_model("tcn"), profile, tmp_path, precision="int8", calibration=_windows()
        )
