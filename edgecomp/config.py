"""What to build: ``BuildConfig`` and ``BuildError``, below the pipeline, passes and streaming.

Kept apart from ``edgecomp.pipeline`` so that recipes (``edgecomp.passes.recipe``) and streaming
(``edgecomp.streaming``) can use them without importing the pipeline that imports them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from edgecomp.targets.base import Precision, TargetError

if TYPE_CHECKING:
    from edgecomp.targets import Target, TargetOptions, TargetProfile

__all__ = [
    "BUILD_CONFIG_VERSION",
    "BuildConfig",
    "BuildError",
    "ConfigFieldError",
    "SPLITS",
    "resolve_target",
]

BUILD_CONFIG_VERSION = 1
SPLITS = ("train", "val", "test")


class BuildError(ValueError):
    """A build cannot go on; the message names the step."""


class ConfigFieldError(TargetError):
    """A ``BuildConfig`` field is refused; ``field`` names it (recipes prefix their key)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class BuildConfig:
    """What to build.

    Attributes:
        target: Target profile name (see `edgecomp targets`).
        precision: A ``Precision`` the profile allows ("fp32", "int8", "int4", ...); a
            mixed-precision build (``build(..., mixed=...)``) uses it for the layers not kept in
            float.
        calibration_windows: Cap on calibration windows, drawn evenly across the training
            split's time range (bounded memory: only the drawn windows are copied).
        eval_split: Split used to verify the artifact and record its metrics.
        options: Overrides of the profile's options (e.g. ``{"keep_float": ["input"]}``,
            ``{"calibration_method": "percentile"}``), checked against the backend's typed
            options; recorded in the manifest's recipe.
        version: Version of this record as stored in the manifest (``recipe.lowering.build``).
    """

    target: str = "x86-64-avx2"
    precision: Precision = Precision.INT8
    calibration_windows: int = 256
    eval_split: str = "test"
    options: dict[str, Any] = field(default_factory=dict)
    version: int = BUILD_CONFIG_VERSION

    def __post_init__(self) -> None:
        try:
            object.__setattr__(
                self, "precision", Precision.parse(self.precision, where="BuildConfig")
            )
        except TargetError as exc:
            raise ConfigFieldError("precision", str(exc)) from None
        if not isinstance(self.options, dict):
            raise BuildError(f"options must be a table of option = value; got {self.options!r}")
        if self.calibration_windows < 1:
            raise BuildError("calibration_windows must be at least 1")
        if self.eval_split not in SPLITS:
            raise BuildError(f"eval_split must be train, val or test, not '{self.eval_split}'")
        if not 1 <= self.version <= BUILD_CONFIG_VERSION:
            raise BuildError(
                f"build config version {self.version}: this edgecomp reads versions 1 to "
                f"{BUILD_CONFIG_VERSION}; upgrade edgecomp"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (precision by value), as stored in the manifest."""
        return {**dataclasses.asdict(self), "precision": str(self.precision)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildConfig:
        """Rebuild from ``to_dict()``; unknown keys and newer versions are refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BuildError(f"build config: unknown key '{unknown[0]}'. Known: {sorted(known)}")
        return cls(**data)


def resolve_target(config: BuildConfig) -> tuple[TargetProfile, type[Target], TargetOptions]:
    """The profile (with the build's option overrides), its backend and the typed options.

    Raises:
        ConfigFieldError: An unknown target, a precision the target cannot emit, or an option
            the backend refuses (unknown key with the closest valid one, or a bad value);
            ``field`` is "target", "precision" or "options".
    """
    from edgecomp.targets import get_profile, get_target

    try:
        profile = get_profile(config.target)
    except TargetError as exc:
        raise ConfigFieldError("target", str(exc)) from None
    if config.options:  # build-time overrides of the profile's options
        profile = replace(profile, options={**profile.options, **config.options})
    target = get_target(profile.backend)
    try:
        options = target.parse_options(profile)
    except TargetError as exc:
        raise ConfigFieldError("options", str(exc)) from None
    allowed = sorted(str(p) for p in target.supported_precisions if p in profile.precisions)
    if config.precision not in allowed:
        why = target().refusal(config.precision, options)
        raise ConfigFieldError(
            "precision",
            f"target '{profile.name}' cannot emit precision '{config.precision}'"
            f"{f' ({why})' if why else ''}. Available: {allowed}",
        )
    return profile, target, options
