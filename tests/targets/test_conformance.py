"""Conformance of every registered backend to the target template (targets/base.py).

Parametrised over ``TARGETS``: a new backend is picked up from its registry line. Each builds every
precision it declares, refuses every one it does not, refuses an option typo, checks parity,
round-trips its manifest and loads in the runtime. Skipped with the install line only where the
backend's toolchain is missing.
"""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest

from edgecomp.targets import (
    TARGETS,
    Capabilities,
    Precision,
    TargetError,
    TargetOptions,
    get_target,
    list_profiles,
)
from helpers.testing import sine_windows, tiny_model, tiny_spec

ARCH = "tcn"  # converts fastest everywhere; the per-backend files cover LSTM and GRU


def _backend(name: str):
    cls = get_target(name)
    marks = [pytest.mark.target]
    if not cls.is_available():
        marks.append(pytest.mark.skip(reason=cls.missing_reason()))
    return pytest.param(name, marks=marks, id=name)


BACKENDS = [_backend(name) for name in TARGETS]


def _declared():
    """Every declared precision but fp32, which the pipeline round trip below builds."""
    return [
        pytest.param(name, str(p), marks=param.marks, id=f"{name}-{p}")
        for param in BACKENDS
        for name in param.values
        for p in sorted(get_target(name).supported_precisions - {Precision.FP32})
    ]


def _undeclared():
    return [
        pytest.param(name, str(p), id=f"{name}-{p}")
        for name in TARGETS
        for p in Precision
        if p not in get_target(name).supported_precisions
    ]


def profile_for(name: str):
    """The backend's first profile, allowing every precision the backend declares."""
    profiles = [p for p in list_profiles().values() if p.backend == name]
    assert profiles, f"backend '{name}' has no profile in targets/profiles"
    declared = tuple(sorted(str(p) for p in get_target(name).supported_precisions))
    return dataclasses.replace(profiles[0], precisions=declared)


def calibration() -> np.ndarray:
    spec = tiny_spec(ARCH)
    return sine_windows(16, spec.input_len, spec.horizon, spec.n_features, 2).x


@pytest.mark.parametrize("name", list(TARGETS))
def test_capabilities_and_options_are_data(name):
    cls = get_target(name)
    caps = cls.capabilities
    assert isinstance(caps, Capabilities) and Precision.FP32 in caps.precisions
    assert cls.supported_precisions == caps.precisions and cls.requires == caps.requires
    assert issubclass(cls.options_type, TargetOptions)
    assert dataclasses.fields(cls.options_type) and cls.options_type.__dataclass_params__.frozen
    assert isinstance(cls.options_type.VERSION, int) and cls.options_type.VERSION >= 1
    json.dumps(caps.to_dict())
    for profile in (p for p in list_profiles().values() if p.backend == name):
        assert {Precision(p) for p in profile.precisions} <= caps.precisions
        options = cls.parse_options(profile)
        assert cls.options_type.from_json(json.loads(json.dumps(options.to_json()))) == options


@pytest.mark.parametrize(("name", "precision"), _declared())
def test_builds_each_declared_precision(tmp_path, name, precision):
    # setup
    cls, model = get_target(name), tiny_model(ARCH)
    windows = calibration() if Precision(precision) in cls.needs_calibration else None
    # execute
    result = cls().emit(
        model, profile_for(name), tmp_path, precision=precision, calibration=windows
    )
    # assert
    assert result.model_file == cls.model_file and (tmp_path / result.model_file).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(result.files)
    assert result.io["outputs"][0]["shape"] == ["batch", model.spec.horizon, 2]
    parity = result.lowering["parity"]
    limit = cls.fp32_tolerance if precision == "fp32" else np.inf
    assert np.isfinite(parity["max_abs_diff"]) and parity["max_abs_diff"] <= limit
    assert result.layers and all({"name", "op_type", "precision"} <= set(r) for r in result.layers)
    assert set(result.toolchain) == set(cls.capabilities.packages)


@pytest.mark.parametrize(("name", "precision"), _undeclared())
def test_refuses_each_undeclared_precision(tmp_path, name, precision):
    cls = get_target(name)
    profile = dataclasses.replace(profile_for(name), precisions=tuple(p.value for p in Precision))
    with pytest.raises(TargetError, match=rf"precision '{precision}' is not supported.*supported:"):
        cls().emit(tiny_model(ARCH), profile, tmp_path, precision=precision, calibration=None)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", list(TARGETS))
def test_an_option_typo_is_refused_with_the_closest_key(tmp_path, name):
    cls = get_target(name)
    profile = profile_for(name)
    typo = dataclasses.replace(profile, options={**profile.options, "keep_flaot": []})
    with pytest.raises(
        TargetError, match=r"unknown option 'keep_flaot' \(did you mean 'keep_float'"
    ):
        cls().emit(tiny_model(ARCH), typo, tmp_path, precision="fp32")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", BACKENDS)
def test_fp32_build_round_trips_the_manifest_and_loads_in_the_runtime(
    tmp_path, traffic_checkpoints, traffic_path, name
):
    import edgecomp_runtime
    from edgecomp.checkpoint import load_checkpoint
    from edgecomp.config import BuildConfig
    from edgecomp.frontend import reference_predict
    from edgecomp.manifest import read_manifest
    from edgecomp.pipeline import build
    from edgecomp.workflow import dataset_for
    from edgecomp_runtime.errors import EngineUnavailableError

    # setup
    cls = get_target(name)
    model = load_checkpoint(traffic_checkpoints[ARCH])
    dataset = dataset_for(model.spec, traffic_path)
    config = BuildConfig(target=profile_for(name).name, precision="fp32")
    # execute
    result = build(model, dataset, config, tmp_path / f"{name}.edgepkg")
    # assert: the template's parts (model file, parity, layer records, toolchain versions)
    manifest = read_manifest(result.path)
    assert manifest["model_file"] == cls.model_file and manifest["layers"]
    assert manifest["recipe"]["lowering"]["parity"]["max_abs_diff"] <= cls.fp32_tolerance
    assert set(manifest["target"]["toolchain"]) == set(cls.capabilities.packages)
    # assert: the manifest reads back as written, with its configs and their versions
    assert manifest == json.loads(json.dumps(result.manifest))
    lowering = manifest["recipe"]["lowering"]
    assert BuildConfig.from_dict(lowering["build"]) == config
    options = cls.options_type.from_json(lowering["options"])
    assert options == cls.parse_options(dataclasses.replace(profile_for(name)))
    assert manifest["metrics"]["parity"]["max_abs_diff"] <= cls.fp32_tolerance
    # assert: the runtime runs it (or refuses it with the reason, where no engine runs it)
    if not cls.capabilities.runs_on_device:
        with pytest.raises(EngineUnavailableError, match=f"'{name}' target"):
            edgecomp_runtime.load(result.path)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # TensorRT engine: ORT fallback notice
        forecast = edgecomp_runtime.load(result.path).predict(dataset.raw_inputs("test")[:2])
    reference = dataset.unscale_targets(reference_predict(model, dataset.split("test").x[:2]))
    assert forecast.shape == reference.shape
    np.testing.assert_allclose(forecast, reference, rtol=1e-3, atol=1e-2)
