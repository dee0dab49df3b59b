"""The build's batch record (targets/tflite/batch.py): the remainder sizes it checks and times,
``batch_min_rows``, and what the runtime engine does with the record."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgecomp.targets.tflite import TfliteTarget
from helpers.testing import tiny_model

pytest.importorskip("litert_torch", reason=TfliteTarget.missing_reason())
pytestmark = [
    pytest.mark.target,
    pytest.mark.skipif(not TfliteTarget.is_available(), reason=TfliteTarget.missing_reason()),
]

from edgecomp.targets.tflite import batch  # noqa: E402
from edgecomp_runtime.engines import litert_batch  # noqa: E402
from edgecomp_runtime.engines.litert import LiteRtEngine  # noqa: E402

SIZES = [str(n) for n in batch.REMAINDER_ROWS]


@pytest.fixture(scope="module")
def loop_gru() -> bytes:
    from edgecomp.targets.tflite.loop import emit_loop

    return emit_loop(tiny_model("gru").module, "int8")


def _linear(seed: int) -> bytes:
    """A linear forecaster [B, 12, 4] -> [B, 3, 2] converted by litert-torch (a graph the
    runtime pins: reshapes, one matmul)."""
    import torch

    from edgecomp.targets.tflite.convert import convert_module

    rng = np.random.default_rng(seed)
    weight = torch.from_numpy(rng.standard_normal((48, 6)).astype(np.float32))

    class Linear(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x.reshape(x.shape[0], -1) @ weight).reshape(x.shape[0], 3, 2)

    return convert_module(Linear().eval(), 12, 4)


@pytest.fixture(scope="module")
def linear() -> bytes:
    return _linear(0)


def _windows(model: bytes, n: int, seed: int = 0) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    (inp,) = Interpreter(model_content=model).get_input_details()
    shape = (n, *(int(d) for d in inp["shape"][1:]))
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _manifest(model: bytes, lowering: dict[str, Any]) -> dict[str, Any]:
    return {"model_file": "model.tflite", "recipe": {"lowering": lowering}}


@pytest.mark.parametrize("kind", ["loop", "pinned"])
def test_remainder_records_every_size_and_the_smallest_that_pays_from_there_up(
    kind, loop_gru, linear
):
    # setup
    model = loop_gru if kind == "loop" else linear
    x = _windows(model, batch.BATCH_ROWS)
    # execute
    least, measured = batch.remainder(model, x, resized=kind == "loop")
    # assert: each size checked and timed; every size from ``least`` up is cheaper as one
    # invoke, and the size below it (if any) is not
    assert list(measured) == SIZES
    assert all(isinstance(m, dict) and m["one_invoke"] > 0 for m in measured.values())
    assert least in (0, *batch.REMAINDER_ROWS)
    paying = [n for n in batch.REMAINDER_ROWS if n >= (least or batch.BATCH_ROWS)]
    assert all(measured[str(n)]["one_invoke"] < measured[str(n)]["per_window"] for n in paying)
    below = [n for n in batch.REMAINDER_ROWS if n < least]
    if below:
        timing = measured[str(below[-1])]
        assert timing["one_invoke"] >= timing["per_window"]


def test_a_size_that_cannot_be_pinned_or_differs_is_never_used(linear, monkeypatch):
    # setup: from 16 windows up, no copy; at 8, the copy of another model (other weights)
    wrong, real = _linear(1), litert_batch.pin_batch

    def pin(model: bytes, rows: int) -> bytes | None:
        if rows >= 16:
            return None
        return real(wrong, rows) if rows == 8 else real(model, rows)

    monkeypatch.setattr(litert_batch, "pin_batch", pin)
    x = _windows(linear, batch.BATCH_ROWS)
    # execute
    least, measured = batch.remainder(linear, x, resized=False)
    # assert: both refusals are recorded by size, and no remainder size is recorded, since a
    # remainder of 32 or 16 windows would need the sizes that failed
    assert measured["16"] == measured["32"] == "not pinned"
    assert measured["8"].startswith("differs by")
    assert isinstance(measured["2"], dict) and isinstance(measured["4"], dict)
    assert least == 0


@pytest.mark.parametrize("kind", ["loop", "pinned"])
def test_the_build_record_runs_any_batch_as_one_invoke_per_window_gives(kind, loop_gru, linear):
    # setup
    model = loop_gru if kind == "loop" else linear
    record = batch.batching(model, *_windows(model, 1).shape[1:])
    x = _windows(model, batch.BATCH_ROWS + 31, seed=4)
    batched = LiteRtEngine(model, _manifest(model, record), threads=1)
    single = LiteRtEngine(model, _manifest(model, {}), threads=1)
    # execute
    out = batched.run(x)
    # assert: the record keeps its measurements; a batch of 95 ran in invokes of 64 and, where
    # the build recorded batch_min_rows, in powers of two down to it; row by row what one invoke
    # per window gives
    assert record["batch_rows"] == batch.BATCH_ROWS
    assert list(record["batch_remainder_timing_ms"]) == SIZES
    least = record.get("batch_min_rows", 0)
    assert least in (0, *batch.REMAINDER_ROWS)
    used = sorted(batched._local.by_rows)
    assert used == sorted({1, 64, *(n for n in (16, 8, 4, 2) if least and n >= least)})
    for rows, interpreter in batched._local.by_rows.items():
        assert interpreter.get_input_details()[0]["shape"][0] == rows
    np.testing.assert_allclose(out, single.run(x), rtol=0, atol=batch.BATCH_ATOL)
