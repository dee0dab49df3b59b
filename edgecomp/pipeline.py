"""build(): model + data -> verified artifact for one target profile.

frontend Model -> target.emit (lower, quantize) -> verify on held-out windows through the
runtime's engine -> manifest -> atomic .edgepkg. No per-target branches: capabilities come from the
profile and the backend class.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecomp.data import Dataset
from edgecomp.frontend import reference_predict
from edgecomp.manifest import new_manifest, producer_versions, write_artifact
from edgecomp.metrics import horizon_metrics, naive_forecasts
from edgecomp.spec import Model
from edgecomp.targets import TargetError, TargetProfile, get_profile, get_target
from edgecomp_runtime.signing import load_private_key

__all__ = [
    "BuildConfig",
    "BuildResult",
    "BuildError",
    "CalibrationSet",
    "build",
    "compile_artifact",
    "calibration_set",
    "calibration_windows",
    "baseline_metrics",
]


class BuildError(ValueError):
    """A build cannot go on; the message names the step."""


@dataclass(frozen=True)
class BuildConfig:
    """What to build.

    Attributes:
        target: Target profile name (see `edgecomp targets`).
        precision: "fp32", "int8" or "int4" (what the profile allows); a mixed-precision build
            (``build(..., mixed=...)``) uses it for the layers not kept in float.
        calibration_windows: Cap on calibration windows, drawn evenly across the training
            split's time range (bounded memory: only the drawn windows are copied).
        eval_split: Split used to verify the artifact and record its metrics.
        options: Overrides of the profile's lowering options (e.g. ``{"keep_float": ["input"]}``,
            ``{"calibration_method": "percentile"}``); recorded in the manifest's recipe.
    """

    target: str = "x86-64-avx2"
    precision: str = "int8"
    calibration_windows: int = 256
    eval_split: str = "test"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.calibration_windows < 1:
            raise BuildError("calibration_windows must be at least 1")
        if self.eval_split not in ("train", "val", "test"):
            raise BuildError(f"eval_split must be train, val or test, not '{self.eval_split}'")


@dataclass(frozen=True)
class BuildResult:
    path: Path
    manifest: dict[str, Any]


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
    """Lower, quantize, verify and package ``model`` for ``config.target``.

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
    if sign_key is not None:
        sign_key = load_private_key(sign_key)
    manifest, files = compile_artifact(model, dataset, config, passes=passes, mixed=mixed)
    if config.options.get("stream"):  # step model + manifest "stream" section (edgecomp.streaming)
        from edgecomp.streaming import add_stream

        add_stream(model, dataset, manifest, files, options=config.options, split=config.eval_split)
    return BuildResult(write_artifact(out, manifest, files, sign_key=sign_key), manifest)


def compile_artifact(
    model: Model,
    dataset: Dataset,
    config: BuildConfig,
    *,
    passes: list[dict[str, Any]] | None = None,
    mixed: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest (metrics on ``config.eval_split`` included) and files of ``build``, in
    memory: nothing is written. See ``build`` for the arguments."""
    profile, target_cls = _resolve(config)
    _check_data_matches(model, dataset)
    calib = None
    if config.precision in target_cls.needs_calibration:
        calib = calibration_set(dataset, config.calibration_windows)
    emitted, files = _emit(target_cls, model, profile, config.precision, calib)
    lowering = {**emitted.lowering, "build": asdict(config)}
    if calib is not None:
        lowering["calibration"] = calib.record()
    recipe = {"passes": list(passes or []), "source": model.source, "lowering": lowering}
    if mixed:
        recipe["mixed_precision"] = mixed
    manifest = new_manifest(
        producer=producer_versions(*emitted.toolchain),
        target={
            "name": profile.name,
            "backend": profile.backend,
            "arch": profile.arch,
            "toolchain": emitted.toolchain,
        },
        precision="mixed" if mixed else config.precision,
        model_file=emitted.model_file,
        io=emitted.io,
        spec=model.spec.to_dict(),
        recipe=recipe,
        layers=_annotate(emitted.layers, (mixed or {}).get("layers", {})),
    )
    manifest["metrics"] = verify(model, dataset, manifest, files, split=config.eval_split)
    return manifest, files


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


def verify(
    model: Model, dataset: Dataset, manifest: dict[str, Any], files: dict[str, bytes], *, split: str
) -> dict[str, Any]:
    """Per-horizon error of the reference and of the emitted model on ``split``, plus parity."""
    from edgecomp_runtime.engines import get_engine

    windows = dataset.split(split)
    if len(windows) == 0:
        raise BuildError(f"the {split} split has no windows to verify the artifact on")
    engine = get_engine(manifest["target"]["backend"])(
        files[manifest["model_file"]], manifest, threads=1
    )
    ref = reference_predict(model, windows.x)
    out = np.concatenate([engine.run(windows.x[i : i + 256]) for i in range(0, len(windows), 256)])
    truth = dataset.raw_targets(split)
    diff = np.abs(out.astype(np.float64) - ref)
    metrics = {
        "split": split,
        "n_windows": len(windows),
        "reference": horizon_metrics(truth, dataset.unscale_targets(ref)),
        "artifact": horizon_metrics(truth, dataset.unscale_targets(out)),
        "parity": {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())},
        "baselines": baseline_metrics(dataset, split),
    }
    if not all(math.isfinite(v) for v in metrics["artifact"]["mae"]):
        raise BuildError(f"the emitted model gives non-finite errors on the {split} split")
    return metrics


def baseline_metrics(dataset: Dataset, split: str) -> dict[str, Any]:
    """Per-horizon errors of naive forecasters on ``split``, in raw units.

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
    return {name: horizon_metrics(truth, pred) for name, pred in forecasts.items()}


def _emit(
    target_cls: type,
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


def _resolve(config: BuildConfig) -> tuple[TargetProfile, type]:
    profile = get_profile(config.target)
    if config.options:  # build-time overrides of the profile's lowering options
        profile = replace(profile, options={**profile.options, **config.options})
    target_cls = get_target(profile.backend)
    allowed = sorted(set(profile.precisions) & set(target_cls.supported_precisions))
    if config.precision not in allowed:
        raise TargetError(
            f"target '{profile.name}' cannot emit precision '{config.precision}'. "
            f"Available: {allowed}"
        )
    if not target_cls.is_available():
        raise TargetError(f"target '{profile.name}': {target_cls.missing_reason()}")
    return profile, target_cls


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
