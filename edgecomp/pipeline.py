"""build(): model + data -> verified artifact for one target profile.

frontend Model -> target.emit (lower, quantize) -> verify on held-out windows through the
runtime's engine -> manifest -> atomic .edgepkg. No per-target branches: capabilities come from the
profile and the backend class.
"""

from __future__ import annotations

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
    "build",
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
        precision: "fp32" or "int8" (what the profile allows).
        calibration_windows: Cap on calibration windows, drawn evenly across the training split.
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

    Raises:
        BuildError, TargetError: The target cannot produce the artifact; nothing is written.
    """
    profile, target_cls = _resolve(config)
    _check_data_matches(model, dataset)
    if sign_key is not None:
        sign_key = load_private_key(sign_key)
    calib = None
    if config.precision in target_cls.needs_calibration:
        calib = calibration_windows(dataset, config.calibration_windows)
    with tempfile.TemporaryDirectory(prefix="edgecomp-build-") as tmp:
        emitted = target_cls().emit(
            model, profile, Path(tmp), precision=config.precision, calibration=calib
        )
        files = {name: (Path(tmp) / name).read_bytes() for name in emitted.files}
    manifest = new_manifest(
        producer=producer_versions(*emitted.toolchain),
        target={
            "name": profile.name,
            "backend": profile.backend,
            "arch": profile.arch,
            "toolchain": emitted.toolchain,
        },
        precision=config.precision,
        model_file=emitted.model_file,
        io=emitted.io,
        spec=model.spec.to_dict(),
        recipe={
            "passes": list(passes or []),
            "source": model.source,
            "lowering": {
                **emitted.lowering,
                "build": asdict(config),
            },
        },
        layers=emitted.layers,
    )
    manifest["metrics"] = verify(model, dataset, manifest, files, split=config.eval_split)
    return BuildResult(write_artifact(out, manifest, files, sign_key=sign_key), manifest)


def calibration_windows(dataset: Dataset, limit: int) -> np.ndarray:
    """Up to ``limit`` scaled training windows spread evenly over the whole training range."""
    x = dataset.train.x
    if len(x) == 0:
        raise BuildError("the training split has no windows to calibrate with")
    index = np.unique(np.linspace(0, len(x) - 1, num=min(limit, len(x))).round().astype(int))
    return np.ascontiguousarray(x[index], dtype=np.float32)


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
    honest bar for near-random series such as returns) and ``seasonal_naive`` repeats the value one
    day earlier when a daily period is known and every window has that much history.
    """
    windows = dataset.split(split)
    truth = dataset.raw_targets(split)
    spec = dataset.spec_fields()
    season = spec["seasonal_period"]
    if season is not None and windows.starts.min() + spec["input_len"] < season:
        season = None
    forecasts = naive_forecasts(
        dataset.values,
        windows.starts,
        spec["input_len"],
        spec["horizon"],
        dataset.target_index,
        seasonal_period=season,
    )
    forecasts["train_mean"] = np.broadcast_to(dataset.mean[dataset.target_index], truth.shape)
    return {name: horizon_metrics(truth, pred) for name, pred in forecasts.items()}


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
