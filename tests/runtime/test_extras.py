"""Engines as extras: a numpy-only base, one extra per engine with its floor, clear errors."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecomp_runtime import ENGINES, EngineUnavailableError, get_engine, load
from edgecomp_runtime import engines as engines_module
from edgecomp_runtime.engines import install_line, version_tuple

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PRECISIONS = ("fp32", "int8", "int4")
# the Makefile's scratch environment: Python 3.10, the oldest onnxruntime the [onnx] extra allows
ORT_MIN_PYTHON = ROOT / ".venv-ort-min" / "bin" / "python"


def _extras() -> dict[str, list[str]]:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+")
    project = tomllib.loads((ROOT / "runtime" / "pyproject.toml").read_text())["project"]
    return {"": project["dependencies"], **project["optional-dependencies"]}


def _engine(backend: str) -> type:
    """The engine class of a backend, without get_engine's installed-package check."""
    module, _, name = ENGINES[backend].partition(":")
    return getattr(importlib.import_module(module), name)


def test_the_base_install_is_numpy_only():
    assert [dep.split(">")[0] for dep in _extras()[""]] == ["numpy"]


@pytest.mark.parametrize("extra", ["onnx", "litert", "tensorrt", "serve", "signing"])
def test_every_documented_extra_exists(extra):
    assert _extras()[extra], f"extra [{extra}] is empty"


@pytest.mark.parametrize("backend", sorted(ENGINES))
def test_each_engine_declares_its_extra_with_its_oldest_version(backend):
    # setup
    engine = _engine(backend)
    # assert: the extra pins the package at the engine's declared floor
    assert f"{engine.package}>={engine.min_version}" in _extras()[engine.extra]


@pytest.mark.parametrize("backend", sorted(ENGINES))
def test_a_missing_engine_names_the_exact_pip_line(backend, make_artifact, monkeypatch):
    # setup: the engine's package cannot be found; the runtime's own engines only
    monkeypatch.setattr(engines_module, "REGISTERED", {})
    engine = _engine(backend)
    monkeypatch.setattr(engine, "module", "edgecomp_absent_engine_pkg")
    # execute + assert
    with pytest.raises(EngineUnavailableError) as info:
        load(make_artifact(), engine=backend)
    message = str(info.value)
    package = f"'edgecomp-runtime[{engine.extra}]'" if engine.extra else "edgecomp-runtime"
    assert message.endswith(f"pip install {package}"), message
    assert "\n" not in message


def test_an_engine_older_than_its_floor_names_the_upgrade_line(make_artifact, monkeypatch):
    # setup: onnxruntime reports a version below the declared floor
    monkeypatch.setattr(engines_module, "_version", lambda package: "1.18.1")
    # execute + assert
    with pytest.raises(EngineUnavailableError) as info:
        load(make_artifact())
    assert str(info.value) == (
        "backend 'onnx' needs onnxruntime>=1.19, found 1.18.1: "
        "pip install -U 'edgecomp-runtime[onnx]'"
    )


def test_an_engine_at_its_floor_loads(make_artifact, monkeypatch):
    monkeypatch.setattr(engines_module, "_version", lambda package: "1.19.0")
    assert load(make_artifact()).backend == "onnx"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1.19", (1, 19)), ("1.19.2rc1", (1, 19, 2)), ("2.3.0.post1", (2, 3, 0)), ("10", (10,))],
)
def test_version_tuple_reads_the_release_numbers(text, expected):
    assert version_tuple(text) == expected


def test_install_line_quotes_the_extra():
    engine = get_engine("onnx")
    assert install_line(engine) == "pip install 'edgecomp-runtime[onnx]'"
    assert install_line(engine, upgrade=True) == "pip install -U 'edgecomp-runtime[onnx]'"


@pytest.mark.parametrize("precision", PRECISIONS)
def test_fixture_artifacts_forecast_as_recorded(precision):
    # setup: the forecast the main environment recorded in fixtures/expected.json
    from edgecomp_runtime.tabular import read_csv

    expected = np.array(json.loads((FIXTURES / "expected.json").read_text())[precision])
    model = load(FIXTURES / f"tcn-{precision}.edgepkg")
    values, _ = read_csv(FIXTURES / "traffic-tail.csv", model.features)
    # execute
    forecast = model.predict(values[: model.input_len])
    # assert: this Python / onnxruntime forecasts what the build host's does
    np.testing.assert_allclose(forecast, expected, rtol=1e-5, atol=1e-4)


_ORT_SCRIPT = r"""
import json, sys
import numpy as np, onnxruntime
import edgecomp_runtime
from edgecomp_runtime.tabular import read_csv
fixtures = sys.argv[1]
out = {"onnxruntime": onnxruntime.__version__, "python": sys.version.split()[0]}
for precision in ("fp32", "int8", "int4"):
    model = edgecomp_runtime.load(f"{fixtures}/tcn-{precision}.edgepkg")
    values, _ = read_csv(f"{fixtures}/traffic-tail.csv", model.features)
    first = model.predict(values[: model.input_len]).tolist()
    out[precision] = model.predict(values[: model.input_len]).tolist()  # through the IOBinding
    assert out[precision] == first, precision
print(json.dumps(out))
"""


@pytest.mark.skipif(
    not ORT_MIN_PYTHON.exists(),
    reason="needs the oldest-onnxruntime environment: make .venv-ort-min/.installed",
)
def test_the_oldest_allowed_onnxruntime_runs_fp32_int8_and_int4():
    # setup
    floor = get_engine("onnx").min_version
    expected = json.loads((FIXTURES / "expected.json").read_text())
    # execute: in the scratch environment (Python 3.10, onnxruntime at the floor)
    proc = subprocess.run(
        [str(ORT_MIN_PYTHON), "-c", _ORT_SCRIPT, str(FIXTURES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # assert
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["onnxruntime"] in (floor, f"{floor}.0")
    assert out["python"].startswith("3.10.")
    for precision in PRECISIONS:
        np.testing.assert_allclose(out[precision], expected[precision], rtol=1e-5, atol=1e-4)


def test_importing_the_runtime_loads_no_engine():
    # a fresh interpreter: nothing this test process imported leaks in
    script = (
        "import json, sys, edgecomp_runtime; "
        "print(json.dumps([m for m in ('onnxruntime', 'ai_edge_litert', 'tensorrt', "
        "'paho', 'cryptography') if m in sys.modules]))"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_the_torch_free_runtime_refuses_executorch_programs_naming_their_runtime():
    from edgecomp_runtime.engines.refuse import ExecuTorchRefused

    with pytest.raises(EngineUnavailableError, match="model.pte: .*ExecuTorch's own runtime"):
        ExecuTorchRefused(b"", {"model_file": "model.pte"}, threads=1)
