"""Typed, versioned options: typos and unknown profile fields refused, precision an enum, every
config that reaches the manifest round-trips through JSON with its version."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

from edgecomp.cli import main
from edgecomp.config import BuildConfig, BuildError, ConfigFieldError
from edgecomp.passes import PASSES, config_from_dict, get_pass
from edgecomp.spec import ModelSpec
from edgecomp.targets import (
    TARGETS,
    Precision,
    TargetError,
    get_profile,
    get_target,
    list_profiles,
    load_profile,
)
from edgecomp.targets.null import NullTarget
from helpers.testing import tiny_model, tiny_spec

PASS_EXAMPLES = {"prune": {"ratio": 0.5}}  # passes whose config has no all-default form


def test_an_option_typo_is_refused_by_the_cli_in_one_line(
    traffic_checkpoints, traffic_path, tmp_path
):
    # execute
    result = CliRunner().invoke(
        main,
        [
            "build", str(traffic_checkpoints["tcn"]), "--data", str(traffic_path),
            "-o", str(tmp_path / "a.edgepkg"), "--option", "per_chanel=true",
        ],
    )  # fmt: skip
    # assert
    assert result.exit_code == 2
    line = result.output.strip()
    assert len(line.splitlines()) == 1, result.output
    assert "unknown option 'per_chanel'" in line and "did you mean 'per_channel'" in line
    assert "'keep_float'" in line and "'calibration_method'" in line  # the valid keys
    assert not any(tmp_path.iterdir())


def test_an_option_typo_is_refused_before_any_work():
    config = BuildConfig(options={"calibraton_method": "entropy"})
    with pytest.raises(ConfigFieldError, match="did you mean 'calibration_method'") as info:
        from edgecomp.config import resolve_target

        resolve_target(config)
    assert info.value.field == "options"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("per_channel", 1, "option 'per_channel' must be true or false; got 1"),
        ("opset", "17", "option 'opset' must be an integer; got '17'"),
        ("keep_float", "head", "option 'keep_float' must be a list; got 'head'"),
        ("threads", 0, "option 'threads' must be a positive integer; got 0"),
    ],
)
def test_option_values_are_checked_by_type(option, value, message):
    profile = get_profile("x86-64-avx2")
    bad = dataclasses.replace(profile, options={**profile.options, option: value})
    with pytest.raises(TargetError, match=message):
        get_target("onnx").parse_options(bad)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, r"unknown field 'colour'\. Valid: \['arch', 'backend'"),
        ({"precison": ["fp32"]}, r"unknown field 'precison' \(did you mean 'precisions'\?\)"),
        ({"options": {"cpu_features": ["neon"]}}, r"options: unknown option 'cpu_features'"),
        ({"backend": "vulkan"}, r"backend: unknown backend 'vulkan'\. Available: \["),
        ({"precisions": ["fp32", "int4"]}, r"backend 'tensorrt' does not emit \['int4'\]"),
        ({"precisions": ["fp8"]}, r"unknown precision 'fp8'\. Known: \['fp32'"),
    ],
)
def test_a_profile_with_an_unknown_field_or_option_is_refused(tmp_path, change, message):
    # setup
    data = {**dataclasses.asdict(get_profile("jetson-orin-nano")), **change}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    # execute / assert
    with pytest.raises(TargetError, match=message) as info:
        load_profile(path)
    assert str(info.value).startswith(str(path))


def test_shipped_profiles_load_and_only_name_fields_code_reads():
    for profile in list_profiles().values():
        options = get_target(profile.backend).parse_options(profile)
        assert set(profile.options) <= {f.name for f in dataclasses.fields(options)}
        assert "cpu_features" not in profile.options


def test_precision_is_an_enum_stored_by_value():
    config = BuildConfig(precision="int4")
    assert config.precision is Precision.INT4
    assert json.loads(json.dumps(config.to_dict()))["precision"] == "int4"
    with pytest.raises(ConfigFieldError, match=r"unknown precision 'int3'\. Known: \['fp32'"):
        BuildConfig(precision="int3")


def test_memory_budget_is_enforced(tmp_path):
    # setup: 2 x 512 LSTM weights are about 12 MiB in fp32
    spec = dataclasses.replace(tiny_spec("lstm"), hparams={"hidden": 512, "layers": 2})
    from edgecomp.models import build_model
    from edgecomp.spec import Model

    model = Model(module=build_model(spec).eval(), spec=spec, source="test")
    profile = get_profile("null-reference")
    small = dataclasses.replace(profile, options={"memory_budget_mb": 1})
    # execute / assert
    with pytest.raises(
        TargetError, match=r"exceed target 'null-reference's memory_budget_mb \(1\)"
    ):
        NullTarget().emit(model, small, tmp_path, precision="fp32")
    assert not any(tmp_path.iterdir())


def test_keep_float_is_refused_where_the_backend_keeps_no_layer(tmp_path):
    profile = dataclasses.replace(get_profile("jetson-orin-nano"), precisions=("fp32",))
    kept = dataclasses.replace(profile, options={**profile.options, "keep_float": ["head"]})
    with pytest.raises(TargetError, match=r"tensorrt: option 'keep_float' is not supported"):
        get_target("tensorrt")().emit(tiny_model("tcn"), kept, tmp_path, precision="fp32")
    assert not any(tmp_path.iterdir())


def test_stream_is_refused_where_the_backend_cannot_stream(tmp_path):
    profile = get_profile("null-reference")
    streamed = dataclasses.replace(profile, options={"stream": True})
    with pytest.raises(TargetError, match="option 'stream': this backend cannot stream"):
        NullTarget().emit(tiny_model("tcn"), streamed, tmp_path, precision="fp32")


def _configs():
    """Every config kind a manifest stores, one example each."""
    yield "BuildConfig", BuildConfig(precision="fp32", options={"keep_float": ["output"]})
    for name in TARGETS:
        profile = next(p for p in list_profiles().values() if p.backend == name)
        keep = ["in"] if get_target(name).capabilities.keeps_layers else []
        profile = dataclasses.replace(profile, options={**profile.options, "keep_float": keep})
        yield f"options:{name}", get_target(name).parse_options(profile)
    for name in PASSES:
        config_type = get_pass(name).config_type
        yield f"pass:{name}", config_from_dict(config_type, PASS_EXAMPLES.get(name, {}), where=name)
    yield "ModelSpec", tiny_spec("tcn")


def _round_trip(config):
    """JSON text and back, as the manifest stores it; returns (rebuilt, stored version)."""
    if isinstance(config, BuildConfig):
        data = json.loads(json.dumps(config.to_dict()))
        return BuildConfig.from_dict(data), data["version"]
    if isinstance(config, ModelSpec):
        data = json.loads(json.dumps(config.to_dict()))
        return ModelSpec.from_dict(data), data["version"]
    if hasattr(config, "to_json"):  # target options: {_type, _version, _data}
        data = json.loads(json.dumps(config.to_json()))
        return type(config).from_json(data), data["_version"]
    record = {"_type": type(config).__name__, "_version": config.version, "_data": config.to_dict()}
    data = json.loads(json.dumps(record))  # pass configs, as run_passes records them
    return config_from_dict(type(config), data["_data"], where="test"), data["_version"]


@pytest.mark.parametrize(("kind", "config"), list(_configs()), ids=lambda v: str(v)[:24])
def test_every_manifest_config_round_trips_through_json_with_its_version(kind, config):
    # setup
    assert dataclasses.is_dataclass(config) and type(config).__dataclass_params__.frozen, kind
    # execute
    rebuilt, stored_version = _round_trip(config)
    # assert
    assert rebuilt == config
    assert isinstance(stored_version, int) and stored_version >= 1


def test_a_newer_config_version_is_refused():
    options = get_target("onnx").options_type()
    record = {**options.to_json(), "_version": options.VERSION + 1}
    with pytest.raises(TargetError, match="cannot read OnnxOptions v2"):
        type(options).from_json(record)
    with pytest.raises(BuildError, match="build config version 2"):
        BuildConfig.from_dict({**BuildConfig().to_dict(), "version": 2})


def test_tune_bench_and_analyze_read_capabilities_not_backend_names():
    from edgecomp.analyze import analyze
    from edgecomp.bench.host import package_versions
    from edgecomp.tune.space import default_space

    # tune: keep_float and mixed only where layers are kept by name; calibration choices as declared
    x86 = default_space(get_profile("x86-64-avx2"), mixed=True)
    null = default_space(get_profile("null-reference"), mixed=True)
    methods = {f.name: f for f in dataclasses.fields(get_target("onnx").options_type)}
    assert x86["calibration_method"] == methods["calibration_method"].metadata["choices"]
    assert "keep_float" in x86 and "keep_float" not in null and "calibration_method" not in null
    assert null["precision"] == ("fp32",)
    # bench: every backend's toolchain versions are described
    versions = package_versions()
    for name in TARGETS:
        assert set(get_target(name).capabilities.packages) <= set(versions)
    # analyze: refused before any compile where the backend cannot keep a layer in float
    with pytest.raises(BuildError, match=r"backend 'tensorrt'\) cannot keep single layers"):
        analyze(None, None, target="jetson-orin-nano", precision="int8")
