"""The search space of `edgecomp tune`, and how a point in it becomes a build recipe.

Every dimension is categorical, so grid, random, TPE, GP and NSGA-II all sample the same space.
A trial draws every dimension; ``recipe_for`` then drops what a choice makes irrelevant (the
calibration settings of an fp32 build, the importance criterion of an unpruned model), so two
trials that differ only there share one canonical recipe and are measured once.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any

from edgecomp.models import MODELS
from edgecomp.targets import TARGETS, Target, TargetProfile, get_target

__all__ = ["SpaceError", "default_space", "load_space", "recipe_for", "recipe_key"]

_KEEP_FLOAT = {"none": [], "input": ["input"], "output": ["output"], "both": ["input", "output"]}
CALIBRATION_OPTION = "calibration_method"  # offered where the backend's options declare choices


class SpaceError(ValueError):
    """A search-space file or override is invalid; the message names the file and dimension."""


def default_space(
    profile: TargetProfile,
    *,
    students: bool = True,
    mixed: bool = False,
    model_type: type | None = None,
) -> dict[str, tuple]:
    """The dimensions the passes and ``profile``'s backend offer, with their choices.

    Args:
        profile: Target profile; its precisions (those its backend can emit) become choices.
        students: Offer distilled students (one training run per student: the costly dimension).
        mixed: Offer "mixed-<precision>": the most sensitive layers kept in float until the
            relative error limit holds (edgecomp.mixed), for backends that keep layers by name.
        model_type: The input model's class; a tuned option's choice is offered only where the
            backend says it applies to this class or an offered student at some precision
            (``Target.option_applies``: onnx ``lowering=hoisted`` only for LSTM/GRU). None:
            every choice.

    The backend's capabilities decide the rest: ``keeps_layers`` offers mixed precision and
    ``keep_float``; a ``calibration_method`` option with choices offers those choices.
    """
    target_cls = get_target(profile.backend)
    keeps_layers = target_cls.capabilities.keeps_layers
    precisions = tuple(p for p in profile.precisions if p in target_cls.supported_precisions)
    if mixed and keeps_layers:
        precisions += tuple(f"mixed-{p}" for p in precisions if p in ("int8", "int4"))
    space: dict[str, tuple] = {
        "precision": precisions,
        "prune_ratio": (0.0, 0.25, 0.5, 0.75),
        "prune_importance": ("l2", "taylor"),
        "calibration_windows": (64, 256, 1024),
    }
    if students:
        space["student"] = ("none", *(f"{arch}-{h}" for arch in sorted(MODELS) for h in (16, 32)))
    methods = option_choices(target_cls, CALIBRATION_OPTION)
    if methods:
        space[CALIBRATION_OPTION] = methods
    if keeps_layers:
        space["keep_float"] = tuple(_KEEP_FLOAT)
    types = [model_type] if model_type is not None else []
    types += [MODELS[arch] for arch in sorted(MODELS)] if students and types else []
    bases = {p.removeprefix("mixed-") for p in precisions}
    for name, choices in tuned_options(target_cls).items():
        space[name] = tuple(
            c
            for c in choices
            if not types
            or any(target_cls.option_applies(name, c, t, b) for t in types for b in bases)
        )
    return space


def tuned_options(target_cls: type[Target]) -> dict[str, tuple]:
    """Options the backend marks ``metadata={"tune": True}`` (e.g. onnx ``engine``), with their
    choices: each becomes a dimension, and ``recipe_for`` passes it on as that option."""
    return {
        spec.name: tuple(spec.metadata["choices"])
        for spec in dataclasses.fields(target_cls.options_type)
        if spec.metadata.get("tune") and spec.metadata.get("choices")
    }


def option_choices(target_cls: type[Target], name: str) -> tuple:
    """The choices the backend's options declare for option ``name`` (empty when none)."""
    for spec in dataclasses.fields(target_cls.options_type):
        if spec.name == name:
            return tuple(spec.metadata.get("choices", ()))
    return ()


def load_space(path: str | Path, base: dict[str, tuple]) -> dict[str, tuple]:
    """``base`` with the dimensions of a TOML file's ``[space]`` table replaced.

    ``[space] prune_ratio = [0.0, 0.5]`` narrows a dimension; a dimension absent from ``base``
    (unknown, or not offered by this target) is refused with the known names.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SpaceError(f"{path}: cannot read the search space: {exc}") from None
    table = data.get("space")
    if not isinstance(table, dict):
        raise SpaceError(f"{path}: expected a [space] table of dimension = [choices]")
    space = dict(base)
    for name, choices in table.items():
        if name not in base:
            raise SpaceError(f"{path}: space.{name}: unknown dimension. Known: {sorted(base)}")
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{path}: space.{name}: expected a non-empty list of choices")
        bad = [c for c in choices if c not in base[name]]
        if bad:
            raise SpaceError(
                f"{path}: space.{name}: {bad[0]!r} is not one of {list(base[name])} (the "
                f"choices that apply to this target and model)"
            )
        space[name] = tuple(choices)
    return space


def recipe_for(
    params: dict[str, Any],
    *,
    target: str,
    finetune_epochs: int,
    needs_calibration: frozenset,
    model_type: type | None = None,
) -> dict[str, Any]:
    """The recipe (as `edgecomp build --recipe` reads it) for one point of the space.

    Order: distill into a student (if any), prune (if any) and fine-tune, then one lowering.
    A tuned option whose choice does not apply to the model that is lowered (the student, else
    ``model_type``) at the trial's precision is left at "auto" (``Target.option_applies``).
    """
    passes: list[dict[str, Any]] = []
    student = params.get("student", "none")
    if student != "none":
        arch, _, hidden = student.rpartition("-")
        passes.append(
            {"pass": "distill", "student": arch, "hparams": _student_hparams(arch, int(hidden))}
        )
    ratio = float(params.get("prune_ratio", 0.0))
    if ratio > 0:
        passes.append({"pass": "prune", "ratio": ratio, "importance": params["prune_importance"]})
        passes.append({"pass": "finetune", "epochs": finetune_epochs})
    lower: dict[str, Any] = {"target": target, "precision": params["precision"]}
    options: dict[str, Any] = {}
    base = params["precision"].removeprefix("mixed-")
    if base in needs_calibration:
        lower["calibration_windows"] = int(params["calibration_windows"])
        if CALIBRATION_OPTION in params:
            options[CALIBRATION_OPTION] = params[CALIBRATION_OPTION]
        mixed = base != params["precision"]  # the mixed search picks the float layers itself
        if params.get("keep_float", "none") != "none" and not mixed:
            options["keep_float"] = _KEEP_FLOAT[params["keep_float"]]
    lowered = MODELS[student.rpartition("-")[0]] if student != "none" else model_type
    options.update(
        {
            k: params[k]
            for k in sorted(_TUNED & set(params))
            if params[k] != "auto" and _applies(target, k, params[k], lowered, base)
        }
    )
    if options:
        lower["options"] = options
    return {"eval_split": "val", "passes": passes, "lower": [lower]}


# every backend's tuned option names (recipe_for gets a profile name, not the backend)
_TUNED = {name for key in TARGETS for name in tuned_options(get_target(key))}


def _applies(target: str, name: str, value: Any, model_type: type | None, precision: str) -> bool:
    if model_type is None:
        return True
    from edgecomp.targets import get_profile

    backend = get_target(get_profile(target).backend)
    return backend.option_applies(name, value, model_type, precision)


def recipe_key(recipe: dict[str, Any]) -> str:
    """A canonical string for a recipe: equal keys build the same artifact."""
    return json.dumps(recipe, sort_keys=True, separators=(",", ":"))


def _student_hparams(arch: str, hidden: int) -> dict[str, Any]:
    key = "channels" if "channels" in MODELS[arch].DEFAULTS else "hidden"
    return {key: hidden}
