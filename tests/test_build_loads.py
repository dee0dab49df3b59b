"""The build runs the runtime's load checks on the model file, so it never writes an artifact
that ``edgecomp_runtime.load`` refuses (verify stage, ``pipeline.check_loads``)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from edgecomp.frontend import Model
from edgecomp.models import build_model
from edgecomp.pipeline import BuildError, check_loads
from edgecomp.targets import get_profile
from edgecomp.targets.tflite.target import TfliteTarget
from edgecomp_runtime import opcheck
from helpers.testing import tiny_spec

pytestmark = pytest.mark.skipif(
    not TfliteTarget.is_available(), reason=TfliteTarget.missing_reason()
)


@pytest.fixture(scope="module")
def uneven_tcn(tmp_path_factory):
    """An fp32 ARM TCN whose targets are not evenly spaced features (its residual gathers)."""
    spec = dataclasses.replace(
        tiny_spec("tcn", n_features=6, n_targets=3), targets=["f4", "f1", "f0"]
    )
    torch.manual_seed(0)
    model = Model(module=build_model(spec).eval(), spec=spec, source="tests: uneven targets")
    out = tmp_path_factory.mktemp("uneven")
    result = TfliteTarget().emit(model, get_profile("arm64-gateway"), out, precision="fp32")
    manifest = {
        "model_file": result.model_file,
        "io": result.io,
        "target": {"backend": "tflite"},
    }
    return manifest, {result.model_file: (out / result.model_file).read_bytes()}


def test_a_tcn_with_uneven_targets_passes_the_runtime_check(uneven_tcn):
    # setup: litert-torch writes GATHER_ND for the residual of targets [4, 1, 0]
    manifest, files = uneven_tcn
    codes, _ = opcheck._tflite_codes(memoryview(files[manifest["model_file"]]))
    # execute + assert: no exception
    assert opcheck.TFLITE_OPS["GATHER_ND"] in {code for code, _ in codes}
    check_loads(manifest, files)


def test_the_build_refuses_what_the_runtime_would_refuse(uneven_tcn, monkeypatch):
    # setup: a runtime without GATHER_ND in its operator list
    manifest, files = uneven_tcn
    ops = {k: v for k, v in opcheck.TFLITE_OPS.items() if k != "GATHER_ND"}
    monkeypatch.setattr(opcheck, "TFLITE_OPS", ops)
    monkeypatch.setattr(opcheck, "_TFLITE_NAMES", {v: k for k, v in ops.items()})
    # execute + assert
    refused = "runtime would refuse this artifact at load.*builtin code 107 "
    with pytest.raises(BuildError, match=refused):
        check_loads(manifest, files)
