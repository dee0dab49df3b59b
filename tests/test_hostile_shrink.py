"""tflite shrink (the flatbuffer rewrite of every ARM build) on odd TCNs: one feature and one
target, kernel 2, horizon 1, no residual, a subset of targets in another order. What ships must be
the rewrite, and give LiteRT's outputs of the file before the rewrite on fresh probe windows
(the rewrite is checked on its own probes at build; these are others)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch

from edgecomp.models import TCNForecaster
from edgecomp.spec import Model
from edgecomp.targets import get_profile
from edgecomp.targets.tflite import TfliteTarget
from helpers.testing import sine_windows, tiny_spec

pytest.importorskip("litert_torch", reason=TfliteTarget.missing_reason())
pytestmark = [
    pytest.mark.target,
    pytest.mark.skipif(not TfliteTarget.is_available(), reason=TfliteTarget.missing_reason()),
]

ODD = {  # name -> (F, L, H, target_index, hparams)
    "one feature, kernel 2, horizon 1": (1, 4, 1, [0], {"channels": 4, "kernel": 2}),
    "no residual": (3, 8, 2, [2, 0], {"channels": 8, "residual": False}),
    "one target of four": (4, 8, 3, [3], {"channels": 8, "kernel": 2}),
}
CASES = [("one feature, kernel 2, horizon 1", "fp32"), ("no residual", "int4")]
CASES += [("one target of four", "int8"), ("one target of four", "int8-dynamic")]


def _model(name: str) -> Model:
    n_features, length, horizon, index, hparams = ODD[name]
    spec = tiny_spec("tcn", input_len=length, horizon=horizon, n_features=n_features)
    spec = dataclasses.replace(
        spec, targets=[spec.features[i] for i in index], hparams=dict(hparams)
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = TCNForecaster(
            n_features, len(index), length, horizon, target_index=index, **hparams
        )
    return Model(module=module.eval(), spec=spec, source="test")


@pytest.mark.parametrize(("name", "precision"), CASES)
def test_shrink_ships_a_file_with_the_outputs_of_the_one_before(
    tmp_path, monkeypatch, name, precision
):
    import edgecomp.targets.tflite.shrink as shrink

    # setup: record what shrink gets and gives during the build
    calls: list[tuple[bytes, bytes]] = []
    original = shrink.shrink

    def spy(model: bytes) -> bytes:
        calls.append((model, original(model)))
        return calls[-1][1]

    monkeypatch.setattr(shrink, "shrink", spy)
    model = _model(name)
    spec = model.spec
    calibration = None
    if precision == "int8":
        n_targets = len(spec.targets)
        calibration = sine_windows(64, spec.input_len, spec.horizon, spec.n_features, n_targets).x
    # execute
    result = TfliteTarget().emit(
        model, get_profile("arm64-gateway"), tmp_path, precision=precision, calibration=calibration
    )
    # assert: the file written is the last rewrite, smaller, and every rewrite gives its input's
    # outputs on 40 fresh probes (the same integers / floats)
    assert calls and (tmp_path / result.model_file).read_bytes() == calls[-1][1]
    for before, after in calls:
        assert len(after) < len(before)
        _assert_same(shrink, before, after)


def _assert_same(shrink: Any, before: bytes, after: bytes) -> None:
    run_before, (inputs, _) = shrink._runner(before)
    run_after, _ = shrink._runner(after)
    rng = np.random.default_rng(123)
    for k in range(40):
        xs = [shrink._probe(rng, *spec) for spec in inputs]
        if k % 2:  # wider than the build's probes
            xs = [x * 10 if x.dtype.kind == "f" else x for x in xs]
        for want, got in zip(run_before(xs), run_after(xs), strict=True):
            np.testing.assert_array_equal(got, want)
