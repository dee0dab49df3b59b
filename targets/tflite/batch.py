"""One invoke for a batch of windows: the check behind the artifact's ``batch_rows``.

The artifact keeps litert-torch's batch-1 graph; the runtime engine pins a copy of it to a static
batch of ``BATCH_ROWS`` windows on first use (edgecomp_runtime/engines/litert_batch.py). The build
records ``batch_rows`` only when that copy exists for the graph, gives, over ``BATCH_ROWS``
windows in one invoke, what one invoke per window gives, and is faster than those invokes on the
build host (measured side by side: for some graphs, e.g. an fp32 TCN, XNNPACK's batch-64 kernels
were slower than 64 batch-1 invokes). The two are timed in CPU time (``time.process_time``; the
interpreters run one thread), so a loaded build host does not decide it: on a 2-core host shared
by other builds, wall-clock medians chose one invoke per window for an int4 TCN whose batch copy
takes about half the CPU time of 64 invokes (benchmarks/arm_compare.py --quick: 10.2 ms at b64).

The rest of a batch (fewer than ``BATCH_ROWS`` windows) runs one window per invoke unless the
build also records ``batch_min_rows``: the smallest of ``REMAINDER_ROWS`` from which every copy
(2, 4, ... 32 windows) gives what one invoke per window gives and takes less CPU time than those
invokes; the engine then splits a remainder into such powers of two.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

BATCH_ROWS = 64  # windows per invoke of the pinned copy (the batch size benchmarked)
BATCH_ATOL = 1e-5  # int8 outputs must agree to the integer
TIMING_ROUNDS = 5  # interleaved rounds of (one invoke, BATCH_ROWS invokes); medians compared
REMAINDER_ROWS = (2, 4, 8, 16, 32)  # the powers of two a remainder is split into (< BATCH_ROWS)


def batching(model: bytes, input_len: int, n_features: int) -> dict[str, Any]:
    """The lowering record of how the runtime batches ``model``'s windows."""
    from edgecomp_runtime.engines.litert_batch import pin_batch

    from .convert import quiet

    pinned = pin_batch(model, BATCH_ROWS)
    rows = BATCH_ROWS if pinned is None and resizable(model) else 0
    if rows:  # a symbolic batch (the loop lowering): the runtime resizes the input instead
        pinned = model
    if pinned is None:
        why = "an op of the graph mixes the batch with another axis or is not known"
        return {"model_batch": 1, "batching": f"one invoke per window ({why})"}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH_ROWS, input_len, n_features)).astype(np.float32)
    try:
        with quiet():
            diff = float(np.abs(_runner(pinned, rows)(x) - _per_window(model, x)).max())
    except (RuntimeError, ValueError) as exc:
        diff, why = float("inf"), f"LiteRT refused the pinned copy: {str(exc).splitlines()[0]}"
    else:
        why = f"{BATCH_ROWS} windows in one invoke differ by {diff:.3g} from one per window"
    if not diff <= BATCH_ATOL:
        return {"model_batch": 1, "batching": f"one invoke per window ({why})"}
    timing = _timing(model, pinned, x, rows)
    if timing["one_invoke"] >= timing["per_window"]:
        return {
            "model_batch": 1,
            "batching": f"one invoke per window (faster here than one invoke of a batch-"
            f"{BATCH_ROWS} copy)",
            "batch_timing_ms": timing,
        }
    how = "resizes the symbolic batch to" if rows else "pins a copy to a batch of"
    least, rest = remainder(model, x, resized=bool(rows))
    split = (
        f"the rest of a batch runs as one invoke per power of two from {least} windows (checked "
        "the same way), then one window per invoke"
        if least
        else "the rest of a batch runs one window per invoke"
    )
    return {
        "model_batch": 1,
        "batch_rows": BATCH_ROWS,
        "batching": f"the runtime {how} {BATCH_ROWS} windows per invoke "
        f"(checked at build: max diff {diff:.3g} against one invoke per window, and faster); "
        + split,
        "batch_timing_ms": timing,
        **({"batch_min_rows": least} if least else {}),
        "batch_remainder_timing_ms": rest,
    }


def remainder(model: bytes, x: np.ndarray, resized: bool) -> tuple[int, dict[str, Any]]:
    """The smallest remainder size worth one invoke, checked and timed like ``batch_rows``.

    Args:
        model: The batch-1 .tflite.
        x: Scaled windows [>= 32, L, F] (the first n are used for a copy of n windows).
        resized: The model's batch is symbolic: resize an interpreter instead of pinning a copy.

    Returns:
        The smallest of ``REMAINDER_ROWS`` from which every copy agrees with one invoke per
        window (within ``BATCH_ATOL``) and takes less CPU time than those invokes (0: none), and
        per size (as a string) the median CPU ms ``{"one_invoke", "per_window"}`` or why that
        size was refused.
    """
    from edgecomp_runtime.engines.litert_batch import pin_batch

    from .convert import quiet

    measured: dict[str, Any] = {}
    for n in REMAINDER_ROWS:
        pinned = model if resized else pin_batch(model, n)
        if pinned is None:
            measured[str(n)] = "not pinned"
            continue
        try:
            with quiet():
                got = _runner(pinned, n if resized else 0)(x[:n])
                diff = float(np.abs(got - _per_window(model, x[:n])).max())
        except (RuntimeError, ValueError) as exc:
            measured[str(n)] = f"LiteRT refused the copy: {str(exc).splitlines()[0]}"
            continue
        if not diff <= BATCH_ATOL:
            measured[str(n)] = f"differs by {diff:.3g} from one invoke per window"
            continue
        measured[str(n)] = _timing(model, pinned, x[:n], n if resized else 0)
    least = 0
    for n in reversed(REMAINDER_ROWS):  # every size from ``least`` up must pay
        timing = measured[str(n)]
        if not isinstance(timing, dict) or timing["one_invoke"] >= timing["per_window"]:
            break
        least = n
    return least, measured


def _timing(model: bytes, pinned: bytes, x: np.ndarray, rows: int = 0) -> dict[str, float]:
    """Median CPU ms for ``x`` in one invoke of ``pinned`` (resized to ``rows`` when not 0) and
    in one invoke per window."""
    from .convert import quiet

    with quiet():
        one, each = _runner(pinned, rows), _runner(model)
        one(x), each(x[:1])  # warm-up
    times: dict[str, list[float]] = {"one_invoke": [], "per_window": []}
    for _ in range(TIMING_ROUNDS):
        for key, call in (("one_invoke", lambda: one(x)), ("per_window", lambda: _each(each, x))):
            start = time.process_time()
            call()
            times[key].append((time.process_time() - start) * 1e3)
    return {key: round(float(np.median(v)), 4) for key, v in times.items()}


def _each(run: Any, x: np.ndarray) -> None:
    for window in x:
        run(window[None])


def _per_window(model: bytes, x: np.ndarray) -> np.ndarray:
    run = _runner(model)
    return np.concatenate([run(w[None]) for w in x])


def resizable(model: bytes) -> bool:
    """Whether the model's input has a symbolic (-1) batch."""
    from ai_edge_litert.interpreter import Interpreter

    from .convert import quiet

    with quiet():
        (inp,) = Interpreter(model_content=model).get_input_details()
    return len(inp["shape_signature"]) > 0 and int(inp["shape_signature"][0]) == -1


def _runner(model: bytes, rows: int = 0) -> Any:
    """Run ``model`` (its input resized to ``rows`` windows when not 0)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, num_threads=1)
    (inp,) = interpreter.get_input_details()
    if rows:
        interpreter.resize_tensor_input(inp["index"], [rows, *inp["shape"][1:]], strict=True)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()

    def run(x: np.ndarray) -> np.ndarray:
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            x = np.clip(np.round(x / scale) + zero, -128, 127)
        interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"]).astype(np.float32)
        if out["dtype"] == np.int8:
            scale, zero = out["quantization"]
            y = (y - zero) * scale
        return y

    return run
