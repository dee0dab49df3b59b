"""build(): model + data -> verified artifact for one target profile, as a list of stages.

The build is ``STAGES``, run in order by ``run_stages`` over one ``BuildContext``::

    resolve -> passes -> lower -> verify -> stream -> package

``build`` runs them all, ``compile_artifact`` stops after verify (nothing written); workflow,
tune and analyze/mixed go through these two. A stage is a function of the context: adding one
is one entry in ``STAGES`` (or ``with_stage(STAGES, after="verify", stage=...)`` for a caller's
own list). No per-target branches: capabilities come from the profile and the backend class.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from edgecomp.config import BuildConfig, BuildError, resolve_target
from edgecomp.data import Dataset
from edgecomp.frontend import reference_predict
from edgecomp.manifest import Manifest, new_manifest, producer_versions, write_artifact
from edgecomp.metrics import horizon_metrics, naive_forecasts, observed_targets
from edgecomp.spec import Model
from edgecomp.targets import (
    Target,
    TargetError,
    TargetOptions,
    TargetProfile,
    get_target,
)
from edgecomp_runtime.signing import load_private_key

__all__ = [
    "STAGES",
    "BuildConfig",
    "BuildContext",
    "BuildResult",
    "BuildError",
    "CalibrationSet",
    "Forecasts",
    "Stage",
    "build",
    "compile_artifact",
    "calibration_set",
    "calibration_windows",
    "baseline_metrics",
    "run_stages",
    "split_forecasts",
    "verify",
    "with_stage",
]

VERIFY_SPLITS = ("val", "test")  # forecasts kept on the context for later stages (a gate)


@dataclass(frozen=True)
class BuildResult:
    path: Path
    manifest: dict[str, Any]


@dataclass(frozen=True)
class Forecasts:
    """Scaled forecasts [N, H, F_out] of the reference model and of the artifact on one split."""

    reference: np.ndarray
    artifact: np.ndarray


@dataclass
class BuildContext:
    """What the stages read and write, typed. The caller fills the inputs; stages the rest.

    Attributes:
        model: The model to compile; the passes stage replaces it with the transformed one.
        dataset: Its data (calibration from train, verification on ``config.eval_split``).
        config: Target, precision and options.
        out: Destination .edgepkg (package stage); None for an in-memory build.
        sign_key: None, or an ed25519 private key that signs the manifest.
        passes: Model passes still to run (``edgecomp.passes.Pass``), run by the passes stage.
        records: Records of the passes applied to ``model`` (given, or from the passes stage).
        mixed: A mixed-precision plan (``edgecomp.mixed``) or None.
        budget: The error budget (``edgecomp.budget.Budget``) a gate stage keeps (the one
            ``edgecomp.ladder`` inserts after verify); None: unchecked.
        log: One line per pass, or None.
        profile: The resolved profile, build overrides applied (resolve).
        target: The backend class (resolve).
        options: The backend's typed options (resolve).
        calibration: Calibration windows when the precision needs them (resolve).
        manifest: The manifest being built (lower; completed by verify, stream, package).
        files: The artifact's files by name (lower, stream).
        forecasts: Reference and artifact forecasts per split in ``VERIFY_SPLITS`` and the
            evaluation split (verify).
        path: The written artifact (package).
        done: Names of the stages run, in order.
    """

    model: Model
    dataset: Dataset
    config: BuildConfig
    out: Path | None = None
    sign_key: Any = None
    passes: list[Any] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    mixed: dict[str, Any] | None = None
    budget: Any = None
    log: Callable[[str], None] | None = None
    profile: TargetProfile | None = None
    target: type[Target] | None = None
    options: TargetOptions | None = None
    calibration: CalibrationSet | None = None
    manifest: Manifest = field(default_factory=dict)  # type: ignore[assignment]
    files: dict[str, bytes] = field(default_factory=dict)
    forecasts: dict[str, Forecasts] = field(default_factory=dict)
    path: Path | None = None
    done: list[str] = field(default_factory=list)


class Stage(NamedTuple):
    """One step of the build: a name and a function of the context."""

    name: str
    run: Callable[[BuildContext], None]


def build(
    model: Model,
    dataset: Dataset,
    config: BuildConfig,
    out: str | Path,
    *,
    sign_key: Any = None,
    passes: list[dict[str, Any]] | None = None,
    mixed: dict[str, Any] | None = None,
) -> BuildResult:
    """Lower, quantize, verify and package ``model`` for ``config.target``: every stage.

    Args:
        model: The model to compile (from `edgecomp.frontend.load_model`).
        dataset: The data the model was trained on: calibration windows come from its training
            split, verification from ``config.eval_split``.
        config: Target, precision and options.
        out: Destination .edgepkg path; written atomically.
        sign_key: None, or an ed25519 private key (PEM path, PEM bytes or key object) that signs
            the manifest into ``manifest.sig``; a bad key fails before anything is built.
        passes: Records of the model passes (prune, distill, ...) already applied to ``model``,
            in order; stored in the manifest's ``recipe.passes``.
        mixed: A mixed-precision plan (``edgecomp.mixed``): ``{"layers": {name: why}, ...}``;
            the layers it keeps in float must already be in ``config.options["keep_float"]``.
            The manifest's precision becomes "mixed", each layer's reason says why, and the plan
            is stored in ``recipe.mixed_precision``.

    Raises:
        BuildError, TargetError: The target cannot produce the artifact; nothing is written.
    """
    ctx = BuildContext(
        model, dataset, config, out=Path(out), sign_key=sign_key, records=list(passes or [])
    )
    ctx.mixed = mixed
    run_stages(ctx)
    assert ctx.path is not None
    return BuildResult(ctx.path, ctx.manifest)


def compile_artifact(
    model: Model,
    dataset: Dataset,
    config: BuildConfig,
    *,
    passes: list[dict[str, Any]] | None = None,
    mixed: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest (metrics on ``config.eval_split`` included) and files of ``build``, in
    memory: the stages up to verify; nothing is written. See ``build`` for the arguments."""
    ctx = BuildContext(model, dataset, config, records=list(passes or []), mixed=mixed)
    run_stages(ctx, until="verify")
    return ctx.manifest, ctx.files


#: Callables ``hook(stage_name, ctx)`` called before each stage runs (the CLI's progress bar).
STAGE_HOOKS: list[Callable[[str, BuildContext], None]] = []


def run_stages(
    ctx: BuildContext,
    stages: Sequence[Stage] | None = None,
    *,
    until: str | None = None,
    skip: Sequence[str] = (),
) -> BuildContext:
    """Run ``stages`` (default ``STAGES``) in order on ``ctx``, up to and including ``until``.

    Raises:
        BuildError: ``until`` or a name in ``skip`` is not a stage (the message lists them).
    """
    stages = STAGES if stages is None else tuple(stages)
    names = [stage.name for stage in stages]
    for name in [*skip, *([until] if until else [])]:
        if name not in names:
            raise BuildError(f"unknown build stage '{name}'. Stages: {names}")
    for stage in stages:
        if stage.name not in skip:
            for hook in STAGE_HOOKS:
                hook(stage.name, ctx)
            stage.run(ctx)
            ctx.done.append(stage.name)
        if stage.name == until:
            break
    return ctx


def with_stage(stages: Sequence[Stage], *, after: str, stage: Stage) -> tuple[Stage, ...]:
    """``stages`` with ``stage`` inserted after the one named ``after``."""
    names = [s.name for s in stages]
    if after not in names:
        raise BuildError(f"unknown build stage '{after}'. Stages: {names}")
    at = names.index(after) + 1
    return (*stages[:at], stage, *stages[at:])


# --- the stages ------------------------------------------------------------------------------


def resolve(ctx: BuildContext) -> None:
    """Profile with the build's overrides, backend, typed options, data match, calibration."""
    config = ctx.config
    if ctx.sign_key is not None:
        ctx.sign_key = load_private_key(ctx.sign_key)  # a bad key fails before any work
    profile, target, ctx.options = resolve_target(config)
    if not target.is_available():
        raise TargetError(f"target '{profile.name}': {target.missing_reason()}")
    ctx.profile, ctx.target = profile, target
    _check_data_matches(ctx.model, ctx.dataset)
    if config.precision in target.needs_calibration or getattr(ctx.options, "keep_int8", ()):
        ctx.calibration = calibration_set(ctx.dataset, config.calibration_windows)


def run_model_passes(ctx: BuildContext) -> None:
    """The model passes still to run on ``ctx.model``; their records join ``ctx.records``."""
    if not ctx.passes:
        return
    from edgecomp.passes import PassContext, run_passes

    pass_ctx = PassContext(ctx.dataset, ctx.config.eval_split, ctx.config.calibration_windows)
    ctx.model, records = run_passes(ctx.model, ctx.passes, pass_ctx, log=ctx.log)
    ctx.records = [*ctx.records, *records]
    ctx.passes = []


def lower(ctx: BuildContext) -> None:
    """The backend's emit (lower, quantize, parity) and the manifest without metrics."""
    assert ctx.target is not None and ctx.profile is not None and ctx.options is not None
    config, profile, calib = ctx.config, ctx.profile, ctx.calibration
    emitted, ctx.files = _emit(ctx.target, ctx.model, profile, str(config.precision), calib)
    lowering = {**emitted.lowering, "build": config.to_dict(), "options": ctx.options.to_json()}
    if calib is not None:
        lowering["calibration"] = calib.record()
    recipe = {"passes": list(ctx.records), "source": ctx.model.source, "lowering": lowering}
    if ctx.mixed:
        recipe["mixed_precision"] = ctx.mixed
    ctx.manifest = new_manifest(
        producer=producer_versions(*emitted.toolchain),
        target={
            "name": profile.name,
            "backend": profile.backend,
            "arch": profile.arch,
            "toolchain": emitted.toolchain,
        },
        precision="mixed" if ctx.mixed else str(config.precision),
        model_file=emitted.model_file,
        io=emitted.io,
        spec=ctx.model.spec.to_dict(),
        recipe=recipe,
        layers=_annotate(emitted.layers, (ctx.mixed or {}).get("layers", {})),
    )


def verify_stage(ctx: BuildContext) -> None:
    """The runtime's load checks of the model file, then metrics on the evaluation split;
    forecasts on val, test and that split kept on ``ctx``."""
    check_loads(ctx.manifest, ctx.files)
    split = ctx.config.eval_split
    for name in dict.fromkeys([split, *VERIFY_SPLITS]):
        if name == split or len(ctx.dataset.split(name)):
            ctx.forecasts[name] = split_forecasts(
                ctx.model, ctx.dataset, ctx.manifest, ctx.files, name
            )
    ctx.manifest["metrics"] = _metrics(ctx.dataset, split, ctx.forecasts[split])


def stream(ctx: BuildContext) -> None:
    """The step model and the manifest's ``stream`` section, when option ``stream`` is on."""
    assert ctx.options is not None
    if not ctx.options.stream:
        return
    from edgecomp.streaming import add_stream

    options = ctx.options.to_dict()
    split = ctx.config.eval_split
    add_stream(ctx.model, ctx.dataset, ctx.manifest, ctx.files, options=options, split=split)


def package(ctx: BuildContext) -> None:
    """Build id, ONNX metadata and MODEL_CARD.md (``edgecomp.provenance``), then checksums,
    the runtime's validation, signature, atomic .edgepkg."""
    if ctx.out is None:
        raise BuildError("the package stage needs an output path (BuildContext.out)")
    from edgecomp.provenance import explain

    explain(ctx, verify)
    ctx.path = write_artifact(ctx.out, ctx.manifest, ctx.files, sign_key=ctx.sign_key)


STAGES: tuple[Stage, ...] = (
    Stage("resolve", resolve),
    Stage("passes", run_model_passes),
    Stage("lower", lower),
    Stage("verify", verify_stage),
    Stage("stream", stream),
    Stage("package", package),
)


# --- calibration and verification ----------------------------------------------------------


@dataclass(frozen=True)
class CalibrationSet:
    """Calibration windows drawn across the training split's whole time range.

    Attributes:
        windows: Scaled float32 windows [N, L, F], in time order.
        starts: Row of each window's first step in the full series.
        train_rows: The training split's row range [start, end).
        limit: The cap asked for.
        sha256: Hex digest of the windows' float32 bytes (C order) and shape: the same data and
            cap give the same digest.
    """

    windows: np.ndarray
    starts: np.ndarray
    train_rows: tuple[int, int]
    limit: int
    sha256: str

    def record(self) -> dict[str, Any]:
        """The set as recorded in the manifest's ``recipe.lowering.calibration``."""
        first, last = int(self.starts[0]), int(self.starts[-1])
        span = max(self.train_rows[1] - self.train_rows[0], 1)
        return {
            "n_windows": len(self.windows),
            "limit": self.limit,
            "sampling": "evenly spaced in time over the training split",
            "train_rows": list(self.train_rows),
            "first_start": first,
            "last_start": last,
            "span_fraction": round((last - first + self.windows.shape[1]) / span, 4),
            "sha256": self.sha256,
        }


def calibration_set(dataset: Dataset, limit: int) -> CalibrationSet:
    """Up to ``limit`` training windows whose start times are evenly spaced over the whole
    training range (not its first days); only the drawn windows are copied.

    Raises:
        BuildError: The training split has no windows, or ``limit`` < 1.
    """
    train = dataset.train
    if len(train) == 0:
        raise BuildError("the training split has no windows to calibrate with")
    if limit < 1:
        raise BuildError(f"the calibration cap must be at least 1; got {limit}")
    wanted = np.linspace(train.starts[0], train.starts[-1], num=min(limit, len(train)))
    index = np.unique(np.searchsorted(train.starts, wanted.round()).clip(0, len(train) - 1))
    windows = np.ascontiguousarray(train.x[index], dtype=np.float32)
    digest = hashlib.sha256(str(windows.shape).encode())
    for window in windows:  # window by window: no bytes copy of the whole set
        digest.update(window.tobytes())
    return CalibrationSet(
        windows, train.starts[index], dataset.bounds["train"], limit, digest.hexdigest()
    )


def calibration_windows(dataset: Dataset, limit: int) -> np.ndarray:
    """Up to ``limit`` scaled training windows spread over the whole training time range."""
    return calibration_set(dataset, limit).windows


def _annotate(layers: list[dict[str, Any]], notes: dict[str, str]) -> list[dict[str, Any]]:
    """Layer records with the mixed-precision search's note: the reason of a layer it kept in
    float, appended to the reason of one it quantized."""
    out = []
    for layer in layers:
        note = notes.get(layer["name"])
        if note is not None:
            joined = note if layer["precision"] == "fp32" else f"{layer['reason']}; {note}"
            layer = {**layer, "reason": joined}
        out.append(layer)
    return out


def check_loads(manifest: dict[str, Any], files: dict[str, bytes]) -> None:
    """Run the runtime's checks of the model file (``edgecomp_runtime.opcheck``: operators, I/O,
    loops) as ``load`` will, so that no artifact is written that the runtime refuses.

    Raises:
        BuildError: The runtime would refuse the file (the message is the runtime's, naming the
            operator or field).
    """
    from edgecomp_runtime.errors import ArtifactError
    from edgecomp_runtime.opcheck import check_onnx, check_tflite

    name = manifest["model_file"]
    try:
        if name.endswith(".onnx"):
            check_onnx(files[name], manifest, manifest["target"]["backend"])
        elif name.endswith(".tflite"):
            check_tflite(files[name], manifest)
    except ArtifactError as exc:
        raise BuildError(f"the runtime would refuse this artifact at load: {exc}") from exc


def split_forecasts(
    model: Model, dataset: Dataset, manifest: dict[str, Any], files: dict[str, bytes], split: str
) -> Forecasts:
    """Scaled forecasts of the reference model and of the artifact (the runtime's engine).

    Raises:
        BuildError: ``split`` has no windows.
    """
    windows = dataset.split(split)
    if len(windows) == 0:
        raise BuildError(f"the {split} split has no windows to verify the artifact on")
    target = get_target(manifest["target"]["backend"])
    engine = target.artifact_runner(files, manifest)
    out = np.concatenate([engine.run(windows.x[i : i + 256]) for i in range(0, len(windows), 256)])
    return Forecasts(reference_predict(model, windows.x), out)


def verify(
    model: Model, dataset: Dataset, manifest: dict[str, Any], files: dict[str, bytes], *, split: str
) -> dict[str, Any]:
    """Per-horizon error of the reference and of the emitted model on ``split``, plus parity."""
    return _metrics(dataset, split, split_forecasts(model, dataset, manifest, files, split))


def _metrics(dataset: Dataset, split: str, pair: Forecasts) -> dict[str, Any]:
    truth, observed = dataset.raw_targets(split), observed_targets(dataset, split)
    diff = np.abs(pair.artifact.astype(np.float64) - pair.reference)
    metrics = {
        "split": split,
        "n_windows": len(truth),
        "reference": horizon_metrics(
            truth, dataset.unscale_targets(pair.reference), observed=observed
        ),
        "artifact": horizon_metrics(
            truth, dataset.unscale_targets(pair.artifact), observed=observed
        ),
        "parity": {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())},
        "baselines": baseline_metrics(dataset, split),
    }
    if not all(v is None or math.isfinite(v) for v in metrics["artifact"]["mae"]):
        raise BuildError(f"the emitted model gives non-finite errors on the {split} split")
    return metrics


def baseline_metrics(dataset: Dataset, split: str) -> dict[str, Any]:
    """Per-horizon errors of naive forecasters on ``split``, in raw units, on observed values.

    ``last_value`` repeats the last observation, ``train_mean`` forecasts the training mean (the
    honest bar for near-random series such as returns) and one ``seasonal_naive_<season>`` per
    season of ``dataset.seasons`` (a day and a week for sub-daily data, a week for daily data)
    repeats the value one season earlier, when every window has that much history.
    """
    windows = dataset.split(split)
    truth = dataset.raw_targets(split)
    spec = dataset.spec_fields()
    args = (dataset.values, windows.starts, spec["input_len"], spec["horizon"])
    forecasts = naive_forecasts(*args, dataset.target_index)
    for season in dataset.seasons:
        if windows.starts.min() + spec["input_len"] >= season:
            naive = naive_forecasts(*args, dataset.target_index, seasonal_period=season)
            forecasts[dataset.season_name(season)] = naive["seasonal_naive"]
    forecasts["train_mean"] = np.broadcast_to(dataset.mean[dataset.target_index], truth.shape)
    observed = observed_targets(dataset, split)
    return {
        name: horizon_metrics(truth, pred, observed=observed) for name, pred in forecasts.items()
    }


def _emit(
    target_cls: type[Target],
    model: Model,
    profile: TargetProfile,
    precision: str,
    calib: CalibrationSet | None,
) -> tuple[Any, dict[str, bytes]]:
    """The backend's EmitResult and the files it wrote, read back into memory."""
    with tempfile.TemporaryDirectory(prefix="edgecomp-build-") as tmp:
        emitted = target_cls().emit(
            model,
            profile,
            Path(tmp),
            precision=precision,
            calibration=None if calib is None else calib.windows,
        )
        return emitted, {name: (Path(tmp) / name).read_bytes() for name in emitted.files}


def _check_data_matches(model: Model, dataset: Dataset) -> None:
    spec = model.spec
    if dataset.features != spec.features or dataset.targets != spec.targets:
        raise BuildError(
            "the data's features/targets differ from the model's spec "
            f"(data: {dataset.features[:4]}…, spec: {spec.features[:4]}…)"
        )
    if (dataset.config.input_len, dataset.config.horizon) != (spec.input_len, spec.horizon):
        raise BuildError(
            f"the data is windowed with L={dataset.config.input_len}, "
            f"H={dataset.config.horizon}; the model expects L={spec.input_len}, "
            f"H={spec.horizon}"
        )
