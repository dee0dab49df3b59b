"""Build-time choice of how the x86 artifact runs: (lowering, engine, threads), by measurement.

Candidates are every combination of

* a lowering from ``LOWERINGS``: ``default`` (the export and int8 rule of ``target.py``) and,
  where ``targets/onnx/recurrent.py`` provides one, ``hoisted`` (each recurrent layer's input
  projection taken out of the recurrence as one GEMM over all steps, the recurrence unrolled)
  and ``scan`` (the same projection, then an ONNX Scan with one step in its body: at int8 every
  GEMM int8 with each weight stored once); for a TCN, ``cone`` (``targets/cone.py``: each block
  computes only the steps the last step's forecast reads, int8 by the default rule); for an
  LSTM/GRU, ``native`` (``targets/onnx/native.py``: the default ONNX file plus the weights packed
  for the runtime's native recurrent kernel, run only by the engine ``native``; not offered
  where that kernel was not built on the build host, and the record says so under ``skipped``);
* an engine of the runtime that is installed on the build host (``ENGINE_KEYS``: onnxruntime,
  and OpenVINO where ``openvino`` is installed; ``NATIVE`` for the native lowering);
* the threads 1 and the profile's ``threads``;
* the engine's inference precision: float32, and on OpenVINO also bfloat16 where the host's CPU
  has it (OpenVINO's default there; the build accepts it only within the parity limit below).

Each candidate runs on the parity windows (the calibration windows spread over their range) and
must pass the parity check: within the fp32 tolerance of the float reference for fp32, and within
``PARITY_SLACK`` times the default candidate's error otherwise. The passing ones are timed
interleaved (``ROUNDS`` rounds, each candidate in turn: ``B1_CALLS`` calls at batch 1 and
``B64_CALLS`` at batch 64, the median per round and then over rounds), and the one with the lowest
``score`` (the geometric mean of its batch-1 and batch-64 latencies) wins.

One model file ships, but its batches may run on two engines: a pair of passing candidates with
the same lowering and threads, one for batch 1 (``engine``) and another engine for batch 64 that
is at least ``ROUTE_GAIN`` times faster there, competes with the single candidates on the
geometric mean of the first's batch-1 and the second's batch-64 latency. When such a pair wins,
both engines are timed again, interleaved, at the batch sizes ``CROSSOVER`` and at batch 64: the
pair stands only if the second is still ``ROUTE_GAIN`` times faster at 64 (else the best single
candidate wins), and the smallest size from which the second is faster at every larger measured
size is where the runtime switches
(``recipe.lowering.batch_routing``: ``{"engine", "min_batch"}``; a runtime that does not know
the field runs every batch on ``engine``, which passed parity at every batch size too).

The manifest records the choice and every measured alternative (``recipe.lowering.candidates``),
the engine (``recipe.lowering.engine``), the engines that ran the same file and passed
(``recipe.lowering.equivalent_engines``: the runtime's fallbacks) and OpenVINO's inference
precision when bf16 won (``recipe.lowering.openvino.inference_precision``).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecomp.targets import base

if TYPE_CHECKING:
    from edgecomp.targets.base import Lowered, Request

PARITY_SLACK = 1.5  # a candidate may err up to this many times the default candidate's error
ROUNDS, B1_CALLS, B64_CALLS = 5, 10, 2
BATCH = 64
ROUTE_GAIN = 1.1  # a second engine serves large batches only this much faster at BATCH or more
CROSSOVER = (2, 4, 8, 16, 32)  # batch sizes where a routed pair is timed to find the switch
# engine key -> the inference precisions measured beyond float32, when the host has them
EXTRA_PRECISIONS = {"openvino": ("bf16",)}
AUTO = "auto"
DEFAULT_LOWERING = "default"
REFERENCE_ENGINE = "onnx"  # the default candidate's engine: the target's own
_ANCHOR = (DEFAULT_LOWERING, REFERENCE_ENGINE)  # whose parity error sets the others' limit
# lowering name -> "module:function" producing the artifact at the request's precision, or "" for
# the default lowering. The function takes (request, fp32 Lowered) and returns a Lowered, or None
# when the lowering does not apply to the model (no recurrent layer).
# NOTE: extension point: targets/onnx/recurrent.py (issue 21) provides ``hoisted``; until it exists
# the candidate is simply not offered.
LOWERINGS: dict[str, str] = {
    DEFAULT_LOWERING: "",
    "hoisted": "edgecomp.targets.onnx.recurrent:hoisted_lowering",
    "scan": "edgecomp.targets.onnx.recurrent:scan_lowering",
    "cone": "edgecomp.targets.cone:onnx_lowering",
    "native": "edgecomp.targets.onnx.native:native_lowering",
}
NATIVE = "native"  # the lowering and the engine that runs it (its own file), paired only together
ENGINE_KEYS = ("onnx", "openvino")  # runtime ENGINES keys that run an ONNX file on a CPU
# engines "auto" measures a lowering on (default: every installed one). The hoisted lowering is
# written for onnxruntime's MatMulInteger path; on OpenVINO 2026.4 its unrolled recurrence ran 20x
# slower (traffic LSTM: 32 ms at batch 1, benchmarks/x86_compare.py) after seconds of compiling.
# OpenVINO runs the scan lowering (as a TensorIterator) but 6.6x slower than onnxruntime at batch 1
# and 5.8x at batch 64 (traffic GRU int8: 1.97 / 6.51 ms against 0.30 / 1.12 ms, build-time
# candidates); option engine=openvino still measures it there.
# NOTE: the int8 GRU unrolled over L (targets/onnx/gru_int8.py) is not a candidate: it computes
# what the int8 Scan computes, in 8x the file, no faster (traffic GRU, build-time candidates:
# 0.63 / 11.6 ms at b1 / b64 against the Scan's 0.69 / 12.1, default 0.12 / 13.9, OpenVINO bf16
# 0.22 / 8.6); its QDQ form on OpenVINO runs int8 FullyConnected layers but 40x slower than
# onnxruntime at b1 (benchmarks/gru_int8.py).
LOWERING_ENGINES: dict[str, tuple[str, ...]] = {
    "hoisted": ("onnx",),
    "scan": ("onnx",),
    NATIVE: (NATIVE,),
}


@dataclass(frozen=True)
class Candidate:
    """One way to run the artifact: a lowering, a runtime engine key, intra-op threads."""

    lowering: str
    engine: str
    threads: int
    inference_precision: str = "f32"


@dataclass(frozen=True)
class Measurement:
    """What the build measured for one candidate.

    Attributes:
        candidate: The candidate.
        latency_ms: Median latency per batch size ("b1", "b64"), empty when it did not run.
        max_abs_diff: Largest difference from the float reference on the parity windows.
        parity_limit: The parity limit it was held to.
        engine_version: The engine package's version.
        error: Why it did not run (compile or run failure), else "".
    """

    candidate: Candidate
    latency_ms: dict[str, float]
    max_abs_diff: float
    parity_limit: float
    engine_version: str
    error: str = ""

    @property
    def passed(self) -> bool:
        """Ran, and within its parity limit."""
        return not self.error and self.max_abs_diff <= self.parity_limit

    @property
    def score(self) -> float:
        """Geometric mean of the batch-1 and batch-64 latencies (lower is better)."""
        return math.sqrt(self.latency_ms["b1"] * self.latency_ms[f"b{BATCH}"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record for the manifest."""
        return {
            **dataclasses.asdict(self.candidate),
            "engine_version": self.engine_version,
            "latency_ms": self.latency_ms,
            "max_abs_diff": self.max_abs_diff if math.isfinite(self.max_abs_diff) else None,
            "parity_limit": self.parity_limit,
            "passed": self.passed,
            **({"error": self.error} if self.error else {}),
        }


def select(measurements: Sequence[Measurement]) -> Measurement:
    """The measured candidate with the lowest score among those that passed parity.

    Raises:
        TargetError: None passed (naming each candidate and why).
    """
    return min(_passed(measurements), key=lambda m: m.score)


def select_routed(
    measurements: Sequence[Measurement],
) -> tuple[Measurement, Measurement | None]:
    """The winner among the passing candidates and the routed pairs (see the module's doc):
    (candidate for batch 1, candidate for large batches or None when one serves all).

    Raises:
        TargetError: None passed (naming each candidate and why).
    """
    passed = _passed(measurements)
    big = f"b{BATCH}"
    options: list[tuple[Measurement, Measurement | None]] = [(m, None) for m in passed]
    options += [
        (a, b)
        for a in passed
        for b in passed
        if (a.candidate.lowering, a.candidate.threads)
        == (b.candidate.lowering, b.candidate.threads)
        and a.candidate.engine != b.candidate.engine
        and b.latency_ms[big] * ROUTE_GAIN <= a.latency_ms[big]
    ]
    return min(
        options, key=lambda o: math.sqrt(o[0].latency_ms["b1"] * (o[1] or o[0]).latency_ms[big])
    )


def _passed(measurements: Sequence[Measurement]) -> list[Measurement]:
    passed = [m for m in measurements if m.passed and m.latency_ms]
    if not passed:
        why = "; ".join(f"{_label(m.candidate)}: {m.error or 'parity'}" for m in measurements)
        raise base.TargetError(f"onnx: no candidate passed the parity check ({why})")
    return passed


def available_engines() -> list[str]:
    """The ``ENGINE_KEYS`` (and ``NATIVE``) whose engine the runtime can load on this host."""
    from edgecomp_runtime.engines import get_engine
    from edgecomp_runtime.errors import EngineUnavailableError

    found = []
    for key in (*ENGINE_KEYS, NATIVE):
        try:
            get_engine(key)
        except EngineUnavailableError:
            continue
        found.append(key)
    return found


def available_lowerings() -> dict[str, Callable[..., Any] | None]:
    """Lowering name -> its function (None for the default) for the lowerings importable here."""
    found: dict[str, Callable[..., Any] | None] = {}
    for name, where in LOWERINGS.items():
        if not where:
            found[name] = None
            continue
        module, _, attr = where.partition(":")
        try:
            function = getattr(importlib.import_module(module), attr, None)
        except ImportError:
            continue
        if callable(function):
            found[name] = function
    return found


def applicable_lowerings(module_type: type, precision: str) -> tuple[str, ...]:
    """The lowerings importable here that apply to a forecaster class at ``precision`` ("fp32",
    "int8", "int4"): the default always; another where its module's ``applies`` says so."""
    found = []
    for name, function in available_lowerings().items():
        module = None if function is None else importlib.import_module(function.__module__)
        applies = getattr(module, "applies", None)
        runs = getattr(module, "available", None)  # a lowering whose engine the host may lack
        if (applies is None or applies(module_type, precision)) and (runs is None or runs()):
            found.append(name)
    return tuple(found)


def available_precisions(engines: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Engine key -> the ``EXTRA_PRECISIONS`` its engine can run on this host's CPU."""
    found: dict[str, tuple[str, ...]] = {}
    if "openvino" in engines:
        import openvino

        capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        found["openvino"] = tuple(
            p for p in EXTRA_PRECISIONS["openvino"] if p.upper() in capabilities
        )
    return found


def candidates(
    options: Any,
    engines: Sequence[str],
    lowerings: Sequence[str],
    precisions: dict[str, tuple[str, ...]] | None = None,
) -> list[Candidate]:
    """The candidates the options allow (``engine`` / ``lowering``: "auto" or one name), each
    at float32 and at the ``precisions`` given for its engine (see ``available_precisions``).

    Raises:
        TargetError: The option names an engine or lowering this host lacks (with what it has).
    """
    engines = _narrow("engine", options.engine, engines, (*ENGINE_KEYS, NATIVE))
    lowerings = _narrow("lowering", options.lowering, lowerings, tuple(LOWERINGS))
    threads = sorted({1, options.threads})
    pairs = [
        (lo, en)
        for lo in lowerings
        for en in engines
        if (lo == NATIVE) == (en == NATIVE)  # the native file runs on the native engine only
        and (options.engine != AUTO or en in LOWERING_ENGINES.get(lo, ENGINE_KEYS))
    ]
    extra = precisions or {}
    return [
        Candidate(lo, en, t, p)
        for lo, en in pairs
        for t in threads
        for p in ("f32", *extra.get(en, ()))
    ]


def choose(
    request: Request, fp32: Lowered, default: Lowered, tolerance: float, model_file: str
) -> Lowered:
    """The fastest candidate that passes parity, with the choice and alternatives recorded.

    Args:
        request: The checked emit request.
        fp32: The default lowering at fp32 (its ``ir`` is the exported graph).
        default: The default lowering at the request's precision.
        tolerance: The target's fp32 parity tolerance.
        model_file: The artifact's model file name (engines name it in their errors).
    """
    from edgecomp.frontend import reference_predict

    functions = available_lowerings()
    skipped = _native_skipped(request, functions)
    _check_applies(request)
    engines = available_engines()
    wanted = candidates(request.options, engines, list(functions), available_precisions(engines))
    files, failed = _lowerings(request, fp32, default, functions, {c.lowering for c in wanted})
    x = base.parity_windows(request.windows, request.model.spec)
    reference = reference_predict(request.model, x)
    checks = (x, reference, model_file)
    runners, measured = _prepare(wanted, files, checks, request, tolerance)
    for c in wanted:
        if c.lowering in failed:
            measured[c] = dataclasses.replace(measured[c], error=failed[c.lowering])
    _time(runners, measured, _batch(x))
    results = [measured[c] for c in wanted]
    checked = [m for c, m in measured.items() if c not in wanted]  # the native file's ONNX one
    best, routed = select_routed(results)
    crossover: dict[str, Any] = {}
    if routed:  # the pair timed again, between its two engines only
        partner = {"candidate": dataclasses.asdict(routed.candidate)}
        crossover = {**partner, **_crossover(runners[best.candidate], runners[routed.candidate], x)}
        if not crossover["confirmed"]:  # a batch-64 gain that did not hold: one engine serves
            best, routed = select(results), None
    lowered = _record(files[best.candidate.lowering], best, results, routed, crossover, checked)
    if skipped:
        lowered.lowering["candidates"]["skipped"] = skipped
    return lowered


def _native_skipped(request: Request, functions: dict) -> list[dict[str, str]]:
    """The native candidate, when the options allow it and it applies to the model but its
    engine cannot run on this host: [{"lowering", "engine", "reason"}] (else []).

    Raises:
        TargetError: Option ``lowering`` or ``engine`` asks for it by name (with the reason).
    """
    options = request.options
    if NATIVE not in functions or {options.lowering, options.engine} - {AUTO, NATIVE}:
        return []
    native = importlib.import_module(functions[NATIVE].__module__)
    if not native.applies(type(request.model.module), str(request.precision)):
        return []
    why = native.unavailable_reason()
    if why and NATIVE in (options.lowering, options.engine):
        option = "lowering" if options.lowering == NATIVE else "engine"
        raise base.TargetError(f"onnx: option '{option}' is 'native', which cannot run here: {why}")
    return [{"lowering": NATIVE, "engine": NATIVE, "reason": why}] if why else []


def _check_applies(request: Request) -> None:
    """A lowering asked for by name that does not apply to the model is refused as such."""
    asked, precision = request.options.lowering, str(request.precision)
    applicable = applicable_lowerings(type(request.model.module), precision)
    if asked in (AUTO, *applicable) or asked not in available_lowerings():
        return
    raise base.TargetError(
        f"onnx: option 'lowering' is {asked!r}, which is not applicable to "
        f"{request.model.spec.arch} at {precision}; applicable: {[AUTO, *applicable]}"
    )


def _narrow(what: str, value: str, found: Sequence[str], known: Sequence[str]) -> list[str]:
    if value == AUTO:
        return list(found)
    if value not in found:
        hint = " (pip install 'edgecomp[openvino]')" if value == "openvino" else ""
        raise base.TargetError(
            f"onnx: option '{what}' is {value!r}, which is not available on this host{hint}; "
            f"available: {[AUTO, *found]} (known: {list(known)})"
        )
    return [value]


def _lowerings(
    request: Request, fp32: Lowered, default: Lowered, functions: dict, names: set[str]
) -> tuple[dict[str, Lowered], dict[str, str]]:
    """The artifact of each lowering asked for; why each that raised failed."""
    files = {DEFAULT_LOWERING: default} if DEFAULT_LOWERING in names else {}
    failed = {}
    for name in sorted(names - {DEFAULT_LOWERING}):
        try:
            args = (request, fp32, default) if name == NATIVE else (request, fp32)
            lowered = functions[name](*args)
        except Exception as exc:  # a candidate's failure is recorded, not the build's end
            failed[name] = f"lowering failed: {type(exc).__name__}: {str(exc)[:200]}"
            continue
        if lowered is not None:
            files[name] = lowered
    if not files:  # the only lowering asked for does not apply: the default one stands in
        files[DEFAULT_LOWERING] = default
    return files, failed


def _prepare(
    wanted: list[Candidate],
    files: dict[str, Lowered],
    checks: tuple[np.ndarray, np.ndarray, str],
    request: Request,
    tolerance: float,
) -> tuple[dict[Candidate, Any], dict[Candidate, Measurement]]:
    """Load each candidate, run the parity windows; the runners of those that passed."""
    runners, measured, diffs = {}, {}, {}
    for cand in (c for c in wanted if c.lowering in files):
        runner, diffs[cand], error = _parity_run(cand, files[cand.lowering], *checks)
        if runner is not None:
            runners[cand] = runner
        measured[cand] = Measurement(cand, {}, diffs[cand], math.inf, _engine_version(cand), error)
    anchor = Candidate(*_ANCHOR, 1)
    if NATIVE in files and not any((c.lowering, c.engine) == _ANCHOR for c in measured):
        # the native file's ONNX model file (the default one) on onnxruntime: the parity anchor,
        # and whether onnxruntime is its equivalent engine (not timed, not a candidate)
        _, diffs[anchor], error = _parity_run(anchor, files[NATIVE], *checks)
        measured[anchor] = Measurement(
            anchor, {}, diffs[anchor], math.inf, _engine_version(anchor), error
        )
    limit = _limit(request, diffs, tolerance)
    for cand, m in measured.items():
        measured[cand] = dataclasses.replace(m, parity_limit=limit)
        if not measured[cand].passed:
            runners.pop(cand, None)
    for cand in wanted:
        version = _engine_version(cand)
        measured.setdefault(cand, Measurement(cand, {}, math.inf, limit, version, "not applicable"))
    return runners, measured


def _parity_run(
    cand: Candidate, lowered: Lowered, x: np.ndarray, reference: np.ndarray, model_file: str
) -> tuple[Any, float, str]:
    from edgecomp_runtime.engines import engine_input, get_engine
    from edgecomp_runtime.opcheck import check_onnx

    recipe = {"lowering": {**lowered.lowering, **_engine_settings(cand)}}
    manifest = {"model_file": model_file, "io": lowered.io, "recipe": recipe}
    files = {model_file: lowered.model, **lowered.extra_files}
    try:
        check_onnx(lowered.model, manifest, "onnx")  # what the runtime's load() checks first
        data = engine_input(cand.engine, manifest, files)  # the native engine: its own file
        runner = get_engine(cand.engine)(data, manifest, threads=cand.threads)
        out = np.concatenate([runner.run(x[:1]), runner.run(x)[1:]])
    except Exception as exc:  # engines raise their own types; recorded as the reason
        return None, math.inf, str(exc).splitlines()[0][:300]
    diff = float(np.abs(out - reference).max())
    return runner, diff if math.isfinite(diff) else math.inf, ""


def _limit(request: Request, diffs: dict[Candidate, float], tolerance: float) -> float:
    if request.precision is base.Precision.FP32:
        return tolerance
    ref = [d for c, d in diffs.items() if (c.lowering, c.engine) == _ANCHOR]
    anchor = min(ref) if ref else min(diffs.values(), default=math.inf)
    return max(tolerance, PARITY_SLACK * anchor) if math.isfinite(anchor) else tolerance


def _batch(x: np.ndarray) -> dict[str, np.ndarray]:
    reps = -(-BATCH // len(x))
    return {"b1": x[:1], f"b{BATCH}": np.concatenate([x] * reps)[:BATCH]}


def _time(runners: dict[Candidate, Any], measured: dict, batches: dict[str, np.ndarray]) -> None:
    """Median latency per batch, interleaved: each round runs every candidate in turn."""
    calls = {"b1": B1_CALLS, f"b{BATCH}": B64_CALLS}
    rounds: dict[Candidate, dict[str, list[float]]] = {c: {k: [] for k in calls} for c in runners}
    order = list(runners)
    for r in range(ROUNDS if order else 0):
        for cand in order[r % len(order) :] + order[: r % len(order)]:
            for key, n in calls.items():
                rounds[cand][key].append(_median_call(runners[cand].run, batches[key], n))
    for cand, per in rounds.items():
        latency = {k: round(float(np.median(v)), 4) for k, v in per.items()}
        measured[cand] = dataclasses.replace(measured[cand], latency_ms=latency)


def _crossover(main: Any, routed: Any, x: np.ndarray) -> dict[str, Any]:
    """Both engines timed interleaved at the ``CROSSOVER`` batch sizes and BATCH: the medians
    (ms), whether the routed one is ``ROUTE_GAIN`` times faster at BATCH (``confirmed``) and the
    smallest size from which it is faster at every larger size (``min_batch``)."""
    sizes = sorted({*(b for b in CROSSOVER if b < BATCH), BATCH})
    times: dict[int, dict[str, list[float]]] = {b: {"main": [], "routed": []} for b in sizes}
    batch = _batch(x)[f"b{BATCH}"]
    for r in range(ROUNDS):
        pair = [("main", main), ("routed", routed)][:: 1 if r % 2 else -1]
        for b in sizes:
            for name, runner in pair:
                times[b][name].append(_median_call(runner.run, batch[:b], B64_CALLS + 1))
    medians = {
        b: {k: round(float(np.median(v)), 4) for k, v in t.items()} for b, t in times.items()
    }
    min_batch = BATCH
    for b in sorted(sizes, reverse=True):
        if medians[b]["routed"] >= medians[b]["main"]:
            break
        min_batch = b
    confirmed = medians[BATCH]["routed"] * ROUTE_GAIN <= medians[BATCH]["main"]
    latency = {str(b): m for b, m in medians.items()}
    return {"confirmed": confirmed, "min_batch": min_batch, "latency_ms": latency}


def _median_call(run: Callable[[np.ndarray], Any], x: np.ndarray, n: int) -> float:
    run(x)  # warm-up for this shape
    times = []
    for _ in range(n):
        start = time.perf_counter_ns()
        run(x)
        times.append((time.perf_counter_ns() - start) / 1e6)
    return float(np.median(times))


def _record(
    lowered: Lowered,
    best: Measurement,
    results: list[Measurement],
    routed: Measurement | None = None,
    crossover: dict[str, Any] | None = None,
    checked: Sequence[Measurement] = (),
) -> Lowered:
    chosen = best.candidate
    settings = {
        **_engine_settings(chosen),
        **(_engine_settings(routed.candidate) if routed else {}),
    }
    # an engine is an equivalent when its candidate at the recorded settings passed
    same_file = [
        m.candidate.engine
        for m in [*results, *checked]
        if m.passed
        and m.candidate.lowering in _same_model_file(chosen.lowering)
        and m.candidate.inference_precision == _precision(settings, m.candidate.engine)
    ]
    record = {
        "chosen": dataclasses.asdict(chosen),
        "score": "geometric mean of the b1 and b64 median latencies (ms), lowest wins; a pair "
        f"routed by batch: the first's b1 and the second's b{BATCH}",
        "rounds": ROUNDS,
        "measured": [m.to_dict() for m in results],
        **({"model_file_parity": [m.to_dict() for m in checked]} if checked else {}),
    }
    lowering = {
        **lowered.lowering,
        "candidate_lowering": chosen.lowering,
        "engine": chosen.engine,
        "equivalent_engines": sorted(set(same_file) - {chosen.engine}),
        "threads": chosen.threads,
        "candidates": record,
        **settings,
    }
    if crossover:  # the pair that won, timed again: routed, or dropped when not confirmed
        record["routed" if routed else "routing_dropped"] = crossover
    if routed is not None:
        min_batch = (crossover or {}).get("min_batch", BATCH)
        lowering["batch_routing"] = {"engine": routed.candidate.engine, "min_batch": min_batch}
    return dataclasses.replace(lowered, lowering=lowering)


def _same_model_file(lowering: str) -> tuple[str, ...]:
    """The lowerings whose model file is ``lowering``'s (native ships the default ONNX file)."""
    return (NATIVE, DEFAULT_LOWERING) if lowering == NATIVE else (lowering,)


def _engine_settings(cand: Candidate) -> dict[str, Any]:
    """The manifest's engine settings for ``cand`` (OpenVINO's inference precision when not f32)."""
    if cand.engine == "openvino" and cand.inference_precision != "f32":
        return {"openvino": {"inference_precision": cand.inference_precision}}
    return {}


def _precision(settings: dict[str, Any], engine: str) -> str:
    return settings.get(engine, {}).get("inference_precision", "f32")


def _engine_version(cand: Candidate) -> str:
    from edgecomp_runtime.engines import ENGINES

    module, _, name = ENGINES[cand.engine].partition(":")
    engine = getattr(importlib.import_module(module), name)
    # the version that names what ran: the engine's own package (the native kernel ships in
    # edgecomp-runtime; its ``package`` is numpy, the dependency the extras check)
    package = getattr(engine, "version_package", engine.package)
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _label(cand: Candidate) -> str:
    precision = "" if cand.inference_precision == "f32" else f"/{cand.inference_precision}"
    return f"{cand.lowering}/{cand.engine}/{cand.threads}t{precision}"
