"""The fallback ladder: what a build tries when its artifact breaks the error budget.

The plain artifact is gated on the test split (observed values, every checked step). Only on a
breach are the rungs tried, in order, each building on the best candidate so far:

1. ``calibration``: better calibration or finer weight scales where the engine has a kernel
   (percentile / entropy / per-channel for ONNX Runtime int8, smaller int4 groups, LiteRT's
   moving-average ranges);
2. ``bias-correction``: the mean output error of the quantized artifact on calibration windows
   (training split) is taken out of the head's bias;
3. ``qat``: a short quantization-aware fine-tune on the training split (``edgecomp.qat``);
4. ``mixed``: keep the most sensitive layers in int8 (int4 builds: option ``keep_int8``), then
   in float (``edgecomp.mixed``), never emitted unless it is smaller than the float artifact;
   planned for the best model so far and, when a rung changed it (bias shift, fine-tune), for
   the model as given too: a fine-tune can drift on the test split where validation does not
   see it.

Every choice is made on the validation split; the test split only gates: a rung's candidates that
meet the budget on validation are gated in validation's order, and the first that also meets it
on test is written.
Each rung is recorded in the manifest's ``budget.ladder`` with its measured cost (seconds,
bytes). When nothing meets the budget, ``BudgetNotMet`` names the worst step, by how much it
missed and the closest candidates with their sizes; nothing is written.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecomp.budget import Budget, BudgetNotMet, GateResult, gate
from edgecomp.data import Dataset
from edgecomp.pipeline import BuildConfig, BuildResult, calibration_set, compile_artifact, verify
from edgecomp.spec import Model

__all__ = [
    "RUNGS",
    "Candidate",
    "Trial",
    "build_within_budget",
    "calibration_variants",
    "keep_budget",
]

Log = Callable[[str], None]
#: Callables ``hook(rung_name)`` called as each ladder rung starts (the CLI's progress bar).
RUNG_HOOKS: list[Callable[[str], None]] = []


def calibration_variants(capabilities: Any, precision: str) -> list[dict[str, Any]]:
    """Lowering options the calibration rung tries, from what the target declares (best first).

    int8 (a calibrated precision): each declared calibration method, per-channel weights where
    the backend declares a per-channel kernel for int8, and the first method with per-channel.
    int4: each declared finer weight group, and with it the same compute block size where the
    backend's int4 kernel takes it. A backend that declares nothing gets nothing.
    """

    if precision == "int4":
        groups = [{"int4_group_size": str(g)} for g in capabilities.int4_groups]
        blocks = [
            {"int4_group_size": str(g), "int4_block_size": g}
            for g in capabilities.int4_groups
            if g in capabilities.int4_blocks
        ]
        return groups + blocks
    if precision not in {str(p) for p in capabilities.calibrated}:
        return []
    option = capabilities.calibration_option
    methods = [{option: m} for m in capabilities.calibration_methods if option]
    if precision not in {str(p) for p in capabilities.per_channel}:
        return methods
    channel = {"per_channel": True}
    return [*methods[:1], channel, *({**m, **channel} for m in methods[:1]), *methods[1:]]


@dataclass(frozen=True)
class Candidate:
    """One way to build the artifact.

    Attributes:
        rung: Ladder rung that proposed it ("plain", "calibration", ...).
        detail: What it changed, in words.
        model: The model to lower.
        config: The build config (``eval_split`` is the validation split).
        mixed: A mixed-precision plan record, or None.
        extra: What the rung measured (fine-tune losses, bias shift, ...).
    """

    rung: str
    detail: str
    model: Model
    config: BuildConfig
    mixed: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trial:
    """A candidate compiled and measured on validation (and, if chosen, gated on test)."""

    candidate: Candidate
    manifest: dict[str, Any]
    files: dict[str, bytes]
    val: GateResult
    seconds: float
    test: GateResult | None = None

    @property
    def size_bytes(self) -> int:
        return sum(len(data) for data in self.files.values())

    def record(self) -> dict[str, Any]:
        """The trial as the manifest's ``budget.ladder`` lists it."""
        c = self.candidate
        out = {
            "rung": c.rung,
            "detail": c.detail,
            "options": c.config.options,
            "seconds": round(self.seconds, 3),
            "size_bytes": self.size_bytes,
            "val": self.val.record(),
            "test": None if self.test is None else self.test.record(),
        }
        return {**out, **({"measured": c.extra} if c.extra else {})}


@dataclass
class _Ladder:
    """State of one walk: inputs, every trial so far, the sizes it compares against."""

    dataset: Dataset
    budget: Budget
    passes: list[dict[str, Any]] | None
    log: Log
    reference: dict[str, dict[str, Any]] = field(default_factory=dict)
    trials: list[Trial] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    float_size: int | None = None
    float_only: int | None = None  # the float size, once a mixed plan was refused for its size

    def gate(self, metrics: dict[str, Any]) -> GateResult:
        """The budget against the float model as given (a rung may change the model: its own
        float output is not the bar)."""
        return gate(self.with_reference(metrics), self.budget)

    def with_reference(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """``metrics`` with the given model's reference on the same split."""
        split = metrics["split"]
        if split not in self.reference:
            self.reference[split] = metrics["reference"]
        return {**metrics, "reference": self.reference[split]}


def build_within_budget(
    model: Model,
    dataset: Dataset,
    config: BuildConfig,
    out: str | Path,
    *,
    budget: Budget | None,
    sign_key: Any = None,
    passes: list[dict[str, Any]] | None = None,
    mixed: dict[str, Any] | None = None,
    rungs: tuple[str, ...] | None = None,
    log: Log | None = None,
) -> BuildResult:
    """``pipeline.build`` with ``budget`` kept by the gate stage, trying only ``rungs``.

    Args:
        model, dataset, config, out, sign_key, passes, mixed: As for ``pipeline.build``.
        budget: The budget; None (``--no-error-limit``) writes the plain artifact unchecked.
        rungs: The ladder rungs to try on a breach (default all; ``()`` only gates).
        log: Receives one line per rung tried.

    Raises:
        BudgetNotMet: Nothing met the budget, or a mixed plan is not smaller than the float
            artifact; nothing was written.
    """
    from edgecomp.pipeline import STAGES, BuildContext, Stage, run_stages, with_stage

    ctx = BuildContext(
        model, dataset, config, out=Path(out), sign_key=sign_key, records=list(passes or [])
    )
    ctx.mixed, ctx.budget, ctx.log = mixed, budget, log
    own = Stage("gate", lambda c: gate_stage(c, rungs=rungs))
    run_stages(ctx, with_stage(STAGES, after="verify", stage=own))
    assert ctx.path is not None
    return BuildResult(ctx.path, ctx.manifest)


def gate_stage(ctx: Any, *, rungs: tuple[str, ...] | None = None) -> None:
    """The build's gate stage (``pipeline.STAGES``): keep ``ctx.budget`` on the test split,
    replacing the context's model, manifest and files with the ladder's winner on a breach.

    Raises:
        BudgetNotMet: No candidate met the budget, or a mixed plan is not smaller than float.
    """
    if ctx.budget is None:
        ctx.manifest["budget"] = {"checked": False, "reason": "no error budget given"}
        return
    if ctx.mixed is not None:
        _check_smaller_than_float(ctx.model, ctx.dataset, ctx.config, ctx.files)
    manifest = ctx.manifest
    if ctx.config.eval_split != "test":  # the budget gates on the test split only
        metrics = verify(ctx.model, ctx.dataset, manifest, ctx.files, split="test")
        manifest = {**manifest, "metrics": metrics}
    ctx.manifest, ctx.files, ctx.model = keep_budget(
        ctx.model,
        ctx.dataset,
        ctx.config,
        manifest,
        ctx.files,
        budget=ctx.budget,
        passes=ctx.records,
        mixed=ctx.mixed,
        rungs=rungs,
        log=ctx.log,
    )


def keep_budget(
    model: Model,
    dataset: Dataset,
    config: BuildConfig,
    manifest: dict[str, Any],
    files: dict[str, bytes],
    *,
    budget: Budget | None,
    passes: list[dict[str, Any]] | None = None,
    mixed: dict[str, Any] | None = None,
    rungs: tuple[str, ...] | None = None,
    log: Log | None = None,
) -> tuple[dict[str, Any], dict[str, bytes], Model]:
    """Gate a compiled artifact (its metrics on the test split) and walk the ladder on a breach.

    ``rungs`` names the rungs to try (default: all of ``RUNGS``, in order).

    Returns:
        The manifest (with its ``budget`` section), files and model of the artifact to write.

    Raises:
        BudgetNotMet: No candidate met the budget; its ``trials`` holds every trial's record.
    """
    if budget is None:
        manifest["budget"] = {"checked": False, "reason": "--no-error-limit"}
        return manifest, files, model
    plain = gate(manifest["metrics"], budget)
    if plain.passed:
        manifest["budget"] = _section(budget, plain, "plain", [])
        return manifest, files, model
    ladder = _Ladder(dataset, budget, passes, log or (lambda _: None))
    ladder.reference["test"] = manifest["metrics"]["reference"]
    ladder.log(f"budget {budget.describe()} missed: {plain.describe()}; trying the ladder")
    asked = Candidate(*_asked(mixed), model, replace(config, eval_split="val"), mixed)
    base = _scored(ladder, asked, manifest, files)
    base.test = plain
    for name, propose in RUNGS:
        if rungs is not None and name not in rungs:
            continue
        for hook in RUNG_HOOKS:
            hook(name)
        winner, base = _climb(ladder, name, propose, base)
        if winner is not None:
            return _chosen(ladder, winner, name), winner.files, winner.candidate.model
    raise BudgetNotMet(_refusal(ladder, plain), [t.record() for t in ladder.trials])


def _asked(mixed: dict[str, Any] | None) -> tuple[str, str]:
    """(rung, detail) naming the artifact as compiled: a mixed plan (its int8 and float layers
    are in its files) or the plain build."""
    if mixed is None:
        return "plain", "as asked"
    from edgecomp.mixed import describe_record

    return "mixed", f"{describe_record(mixed)}, as planned"


def _chosen(ladder: _Ladder, winner: Trial, rung: str) -> dict[str, Any]:
    """The winner's manifest: test metrics, the build's eval split, the budget section."""
    manifest = copy.deepcopy(winner.manifest)
    metrics = _test_metrics(winner, ladder.dataset)
    manifest["metrics"] = {
        **ladder.with_reference(metrics),
        "candidate_reference": metrics["reference"],
    }
    manifest["recipe"]["lowering"]["build"]["eval_split"] = "test"
    records = [t.record() for t in ladder.trials]
    manifest["budget"] = _section(ladder.budget, winner.test, rung, records, ladder.skipped)
    return manifest


def _climb(
    ladder: _Ladder, name: str, propose: Callable, base: Trial
) -> tuple[Trial | None, Trial]:
    """Try one rung's candidates; the winner (gated on test) or None, and the new base."""
    try:
        candidates = propose(ladder, base)
    except Exception as exc:  # a rung that cannot apply is skipped, with its reason
        candidates, reason = [], f"{type(exc).__name__}: {exc}"
    else:
        reason = "nothing to try for this target and precision"
    if not candidates:
        ladder.skipped.append({"rung": name, "reason": reason.splitlines()[0][:300]})
        ladder.log(f"  {name}: skipped ({reason.splitlines()[0][:120]})")
        return None, base
    trials = [t for t in (_try(ladder, name, c) for c in candidates) if t is not None]
    if not trials:
        return None, base
    ranked = sorted(trials, key=lambda t: t.val.excess)
    for trial in ranked:  # validation chose the order; each one tried is gated on test
        if not (trial.val.passed and _candidate_allowed(ladder, trial)):
            continue
        trial.test = ladder.gate(_test_metrics(trial, ladder.dataset))
        ladder.log(f"  {name}: {trial.candidate.detail} -> {trial.test.describe()}")
        if trial.test.passed:
            return trial, trial
    best = ranked[0]
    return None, best if best.val.excess < base.val.excess else base


def _try(ladder: _Ladder, name: str, candidate: Candidate) -> Trial | None:
    """Measure a candidate; one the target cannot build is skipped with its reason."""
    try:
        return _measure(ladder, candidate)
    except ValueError as exc:  # TargetError and BuildError are ValueErrors
        reason = f"{candidate.detail}: {str(exc).splitlines()[0][:300]}"
        ladder.skipped.append({"rung": name, "reason": reason})
        return None


def _measure(ladder: _Ladder, candidate: Candidate) -> Trial:
    start = time.perf_counter()
    manifest, files = compile_artifact(
        candidate.model,
        ladder.dataset,
        candidate.config,
        passes=ladder.passes,
        mixed=candidate.mixed,
    )
    trial = Trial(candidate, manifest, files, ladder.gate(manifest["metrics"]), 0.0)
    trial.seconds = time.perf_counter() - start + candidate.extra.get("seconds", 0.0)
    ladder.trials.append(trial)
    ladder.log(
        f"  {candidate.rung}: {candidate.detail}: {trial.val.describe()} "
        f"({trial.size_bytes:,} B, {trial.seconds:.1f} s)"
    )
    return trial


def _scored(
    ladder: _Ladder, candidate: Candidate, manifest: dict[str, Any], files: dict[str, bytes]
) -> Trial:
    """The gated artifact as the first trial, scored on validation (not compiled again)."""
    start = time.perf_counter()
    metrics = verify(candidate.model, ladder.dataset, manifest, files, split="val")
    trial = Trial(candidate, {**manifest, "metrics": metrics}, files, ladder.gate(metrics), 0.0)
    trial.seconds = time.perf_counter() - start
    ladder.trials.append(trial)
    ladder.log(f"  {candidate.rung}: {trial.val.describe()} ({trial.size_bytes:,} B)")
    return trial


def _test_metrics(trial: Trial, dataset: Dataset) -> dict[str, Any]:
    return verify(trial.candidate.model, dataset, trial.manifest, trial.files, split="test")


def _candidate_allowed(ladder: _Ladder, trial: Trial) -> bool:
    """A mixed plan is emitted only when it is smaller than the float artifact."""
    if trial.candidate.mixed is None:
        return True
    if trial.candidate.extra.get("all_float"):
        ladder.float_size = ladder.float_only = _float_size(ladder, trial.candidate)
        ladder.log("  mixed: every layer would stay in float: that is the float artifact")
        return False
    size = _float_size(ladder, trial.candidate)
    if trial.size_bytes < size:
        return True
    ladder.float_only = size
    ladder.log(f"  mixed: {trial.size_bytes:,} B is not smaller than float ({size:,} B)")
    return False


def _float_size(ladder: _Ladder, candidate: Candidate) -> int:
    if ladder.float_size is None:
        config = replace(candidate.config, precision="fp32", options=_without_keep(candidate))
        _, files = compile_artifact(candidate.model, ladder.dataset, config)
        ladder.float_size = sum(len(data) for data in files.values())
    return ladder.float_size


def _check_smaller_than_float(
    model: Model, dataset: Dataset, config: BuildConfig, files: dict[str, bytes]
) -> None:
    """Refuse a mixed-precision artifact that is not smaller than the float one."""
    options = {k: v for k, v in config.options.items() if k not in KEEP_OPTIONS}
    _, float_files = compile_artifact(
        model, dataset, replace(config, precision="fp32", options=options)
    )
    size, float_size = (sum(len(d) for d in f.values()) for f in (files, float_files))
    if size >= float_size:
        raise BudgetNotMet(
            f"the mixed-precision plan ({size:,} B) is not smaller than the float artifact "
            f"({float_size:,} B), so it is not emitted: what the budget allows is the float "
            f"artifact; build it with --precision fp32. Nothing was written."
        )


KEEP_OPTIONS = ("keep_float", "keep_int8")  # per-layer precision: the mixed rung's to choose


def _without_keep(candidate: Candidate) -> dict[str, Any]:
    return {k: v for k, v in candidate.config.options.items() if k not in KEEP_OPTIONS}


# ---- rungs: each returns candidates built on the best trial so far


def _calibration(ladder: _Ladder, base: Trial) -> list[Candidate]:
    from edgecomp.targets import get_target

    config = base.candidate.config
    target = get_target(base.manifest["target"]["backend"])
    variants = calibration_variants(target.capabilities, config.precision)
    if config.precision == "int4" and "int4_rounding" in _option_names(target):
        variants.append({"int4_rounding": "max"})  # where clipping hurts the outputs
    return [
        replace(
            base.candidate,
            rung="calibration",
            detail=", ".join(f"{k}={v}" for k, v in variant.items()),
            config=replace(config, options={**config.options, **variant}),
            extra={},
        )
        for variant in variants
        if any(config.options.get(k) != v for k, v in variant.items())
    ]


def _option_names(target: Any) -> set[str]:
    return {f.name for f in fields(target.options_type)}


def _bias_correction(ladder: _Ladder, base: Trial) -> list[Candidate]:
    from edgecomp.frontend import reference_predict
    from edgecomp_runtime.engines import get_engine

    model, config = base.candidate.model, base.candidate.config
    head = getattr(model.module, "head", None)
    spec = model.spec
    if head is None or getattr(head, "bias", None) is None:
        raise ValueError("the model has no head bias to correct (only edgecomp's own models do)")
    windows = calibration_set(ladder.dataset, config.calibration_windows).windows
    engine = get_engine(base.manifest["target"]["backend"])(
        base.files[base.manifest["model_file"]], base.manifest, threads=1
    )
    out = np.concatenate([engine.run(windows[i : i + 256]) for i in range(0, len(windows), 256)])
    shift = (out.astype(np.float64) - reference_predict(model, windows)).mean(axis=0)
    corrected = _shift_head(model, shift.reshape(-1))
    extra = {
        "split": "train (calibration windows)",
        "n_windows": len(windows),
        "mean_abs_shift_scaled": float(np.abs(shift).mean()),
        "outputs": [spec.horizon, len(spec.targets)],
    }
    return [
        replace(
            base.candidate, rung="bias-correction", detail="head bias", model=corrected, extra=extra
        )
    ]


def _shift_head(model: Model, shift: np.ndarray) -> Model:
    import torch

    module = copy.deepcopy(model.module)
    with torch.no_grad():
        module.head.bias -= torch.as_tensor(shift, dtype=module.head.bias.dtype)
    return Model(module=module, spec=model.spec, source=model.source)


def _qat(ladder: _Ladder, base: Trial) -> list[Candidate]:
    from edgecomp.qat import QatConfig, qat_finetune

    config = base.candidate.config
    bits = {"int8": 8, "int4": 4}.get(config.precision)
    if bits is None:
        return []
    group = _int4_group(config.options) if bits == 4 else None
    rounding = str(config.options.get("int4_rounding", "search"))  # as the target will round
    model, record = qat_finetune(
        base.candidate.model,
        ladder.dataset.train,
        QatConfig(bits=bits, group_size=group, search=rounding == "search"),
    )
    detail = f"fake-quant int{bits} fine-tune, {record['epochs']} epochs on the training split"
    return [replace(base.candidate, rung="qat", detail=detail, model=model, extra=record)]


def _int4_group(options: dict[str, Any]) -> int:
    """The group the fine-tune fakes for int4: the target's group size when it names one."""
    size = str(options.get("int4_group_size", "16"))
    return int(size) if size.isdigit() else 16


def _mixed(ladder: _Ladder, base: Trial) -> list[Candidate]:
    if base.candidate.config.precision == "fp32":
        return []
    asked = ladder.trials[0].candidate.model  # the plain trial: the model as given
    models = {"": base.candidate.model}
    if asked is not base.candidate.model:  # a rung changed it: its drift shows on test only
        models = {f", {base.candidate.rung}'s model": base.candidate.model, ", as given": asked}
    return [_mixed_plan(ladder, base, model, note) for note, model in models.items()]


def _mixed_plan(ladder: _Ladder, base: Trial, model: Model, note: str) -> Candidate:
    """The mixed plan of ``model`` at the base candidate's options (measured on validation)."""
    from edgecomp.analyze import analyze
    from edgecomp.mixed import plan_mixed

    config = base.candidate.config
    kw = {
        "options": _without_keep(base.candidate),
        "calibration_windows": config.calibration_windows,
    }
    start = time.perf_counter()
    sens = analyze(
        model, ladder.dataset, target=config.target, precision=config.precision, split="val", **kw
    )
    plan = plan_mixed(model, ladder.dataset, sens, ladder.budget, **kw)
    return replace(
        base.candidate,
        rung="mixed",
        detail=f"{plan.describe()}{note}",
        model=model,
        config=replace(config, options=plan.options(config.options)),
        mixed=plan.record(),
        extra={
            "seconds": time.perf_counter() - start,
            "kept_float": plan.kept_float,
            "kept_int8": plan.kept_int8,
            "all_float": set(plan.kept_float) >= set(sens.quantizable),
        },
    )


RUNGS: tuple[tuple[str, Callable[[_Ladder, Trial], list[Candidate]]], ...] = (
    ("calibration", _calibration),
    ("bias-correction", _bias_correction),
    ("qat", _qat),
    ("mixed", _mixed),
)


def _section(
    budget: Budget,
    result: GateResult,
    met_by: str,
    ladder: list[dict[str, Any]],
    skipped: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    return {
        "checked": True,
        "budget": budget.record(),
        "met_by": met_by,
        "gate": result.record(),
        "ladder": ladder,
        "skipped": skipped or [],
    }


def _refusal(ladder: _Ladder, plain: GateResult) -> str:
    """The worst step of the plain build, by how much it missed, the closest candidates."""
    ranked = sorted(ladder.trials, key=lambda t: (t.test or t.val).excess)[:3]
    closest = "; ".join(
        f"{t.candidate.rung} ({t.candidate.detail}): {(t.test or t.val).split} worst "
        f"h{(t.test or t.val).worst_step + 1} {(t.test or t.val).worst_change * 100:+.2f} %, "
        f"{t.size_bytes:,} B"
        for t in ranked
    )
    built = "mixed plan" if ladder.trials and ladder.trials[0].candidate.mixed else "plain build"
    text = (
        f"no candidate meets {ladder.budget.describe()}: the {built}'s worst step is "
        f"{plain.describe()}. Closest: {closest}."
    )
    if ladder.float_only is not None:
        text += (
            f" Only the float artifact ({ladder.float_only:,} B) meets the budget: a mixed plan "
            f"is not emitted unless it is smaller; build with --precision fp32."
        )
    return text + " Nothing was written (loosen the budget or pass --no-error-limit)."
