"""The ExecuTorch backend beyond the conformance suite: its options, its calibration batches and a
recurrent model at int8 (the LSTM stays float: the XNNPACK quantizer has no pattern for it)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgecomp.targets import TargetError, get_profile, get_target
from edgecomp.targets.executorch.lower import EXAMPLE_BATCH, calibration_batches
from helpers.testing import sine_windows, tiny_model, tiny_spec

TARGET = get_target("executorch")
PROFILE = "x86-64-executorch"


def _profile(**options):
    profile = get_profile(PROFILE)
    return dataclasses.replace(profile, options={**profile.options, **options})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_batch": 8}, r"option 'max_batch' must be at least 16; got 8"),
        ({"weight_granularity": "rowwise"}, r"option 'weight_granularity' must be one of"),
        ({"keep_float": ["head"]}, r"option 'keep_float' is not supported"),
        ({"max_bacth": 64}, r"unknown option 'max_bacth' \(did you mean 'max_batch'"),
    ],
)
def test_bad_options_are_refused_before_anything_is_exported(tmp_path, options, message):
    with pytest.raises(TargetError, match=message):
        TARGET().emit(tiny_model("tcn"), _profile(**options), tmp_path, precision="fp32")
    assert not any(tmp_path.iterdir())


def test_an_onnx_source_is_refused_naming_torch_export(tmp_path):
    from edgecomp.frontend import OnnxSource

    model = tiny_model("tcn")
    source = dataclasses.replace(model, module=object.__new__(OnnxSource))
    with pytest.raises(TargetError, match="an ONNX source cannot be lowered"):
        TARGET().emit(source, _profile(), tmp_path, precision="fp32")


@pytest.mark.parametrize(("n", "size"), [(1, 64), (15, 64), (16, 64), (130, 64), (70, 16)])
def test_calibration_batches_cover_every_window_and_none_is_below_the_example_batch(n, size):
    # setup
    windows = np.arange(n, dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)
    # execute
    batches = calibration_batches(windows, size)
    # assert
    assert all(EXAMPLE_BATCH <= len(b) <= max(size, EXAMPLE_BATCH) for b in batches)
    seen = np.unique(np.concatenate([b[:, 0, 0] for b in batches]))
    np.testing.assert_array_equal(seen, np.arange(n))


@pytest.mark.target
def test_lstm_int8_quantizes_the_head_and_keeps_the_lstm_float():
    pytest.importorskip("executorch", reason=TARGET.missing_reason())
    from edgecomp.targets.executorch import lower

    # setup: export and quantize only (lowering the unrolled LSTM to XNNPACK takes minutes;
    # the conformance suite lowers and runs the TCN at both precisions)
    model, spec = tiny_model("lstm"), tiny_spec("lstm")
    windows = sine_windows(32, spec.input_len, spec.horizon, spec.n_features, 2).x
    exported = lower.export(model, EXAMPLE_BATCH)
    # execute
    _, quantized = lower.quantize(exported, windows, per_channel=True, max_batch=EXAMPLE_BATCH)
    records = lower.layer_records(model, "int8", lower.Program(b"", 0, (), quantized))
    # assert: one record per weighted module, with what happened to it and why
    by_name = {r["name"]: r for r in records}
    assert quantized == ("head",)
    assert set(by_name) == {"rnn", "head"}
    assert by_name["head"]["precision"] == "int8"
    assert by_name["rnn"]["precision"] == "fp32"
    assert "no int8 pattern for LSTM" in by_name["rnn"]["reason"]
