"""Build recipes (TOML): model passes in order, then one lowering per target.

```toml
calibration_windows = 256       # optional: windows for data-driven pass criteria
eval_split = "test"             # optional: split on which each pass's error is measured

[[passes]]
pass = "prune"                  # a name in edgecomp.passes.PASSES; other keys are its config
ratio = 0.5

[[passes]]
pass = "finetune"
epochs = 15

[[lower]]                       # one artifact per entry (edgecomp.config.BuildConfig fields)
target = "x86-64-avx2"
precision = "int8"
name = "lstm-x86-int8"          # optional: the artifact's file stem when there are several
```
Every error names the file and the key (``recipe.toml: passes[0].ratio: ...``).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgecomp.config import BuildConfig, ConfigFieldError, resolve_target
from edgecomp.passes import Pass, PassError, make_pass

__all__ = ["LOWER_KEYS", "Recipe", "RecipeError", "load_recipe", "parse_recipe"]

TOP_KEYS = {"passes", "lower", "eval_split", "calibration_windows"}
LOWER_KEYS = {"target", "precision", "calibration_windows", "options", "name"}


class RecipeError(ValueError):
    """A recipe cannot be read or used; the message names the file and the key."""


@dataclass(frozen=True)
class Recipe:
    """A parsed, validated recipe.

    Attributes:
        source: Where it came from (file path), used in error messages.
        passes: ``(name, options)`` per model pass, in order.
        lower: One dict of ``BuildConfig`` fields (plus an optional ``name``) per artifact.
        eval_split: Split on which passes measure error.
        calibration_windows: Windows for data-driven criteria.
    """

    source: str
    passes: tuple[tuple[str, dict[str, Any]], ...] = ()
    lower: tuple[dict[str, Any], ...] = ()
    eval_split: str = "test"
    calibration_windows: int = 256

    def make_passes(self) -> list[Pass]:
        """Instantiate the passes; a bad option raises RecipeError naming file and key."""
        made = []
        for i, (name, options) in enumerate(self.passes):
            try:
                made.append(make_pass(name, options, where=f"{self.source}: passes[{i}]"))
            except PassError as exc:
                message = str(exc)
                if not message.startswith(self.source):
                    message = f"{self.source}: passes[{i}].pass: {message}"
                raise RecipeError(message) from None
        return made

    def build_configs(self) -> list[tuple[str, Any]]:
        """``(artifact stem, BuildConfig)`` per lowering; errors name file and key."""
        configs = []
        for i, entry in enumerate(self.lower):
            where = f"{self.source}: lower[{i}]"
            fields = {k: v for k, v in entry.items() if k != "name"}
            try:
                config = BuildConfig(**fields, eval_split=self.eval_split)
                resolve_target(config)
            except ConfigFieldError as exc:
                raise RecipeError(f"{where}.{exc.field}: {exc}") from None
            except (ValueError, TypeError) as exc:
                raise RecipeError(f"{where}: {exc}") from None
            stem = entry.get("name") or f"{config.target}-{config.precision}"
            if stem in [s for s, _ in configs]:
                raise RecipeError(f"{where}.name: artifact name '{stem}' is used twice")
            configs.append((stem, config))
        return configs

    def with_overrides(self, sets: dict[str, Any] | None = None, **lowering: Any) -> Recipe:
        """A copy with ``sets`` (``"pass.key" -> value``) and lowering flags applied.

        ``lowering`` keys with a value other than None (target, precision, calibration_windows,
        options) replace those of every lowering; a target flag leaves exactly one lowering.
        """
        passes = [(name, dict(options)) for name, options in self.passes]
        for dotted, value in (sets or {}).items():
            name, _, key = dotted.partition(".")
            hits = [options for n, options in passes if n == name]
            if not key or not hits:
                raise RecipeError(
                    f"--set {dotted}: expected PASS.KEY with PASS among {[n for n, _ in passes]}"
                )
            for options in hits:
                options[key] = value
        flags = {k: v for k, v in lowering.items() if v is not None}
        lower = [dict(entry) for entry in self.lower] or [{}]
        if "target" in flags:
            lower = lower[:1]
            lower[0].pop("name", None)
        lower = [{**entry, **flags} for entry in lower]
        return replace(self, passes=tuple(passes), lower=tuple(lower))


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a TOML recipe.

    Raises:
        RecipeError: Unreadable file, bad TOML (with line and column), an unknown key, or a bad
            value; the message names the file and the key.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML: {exc}") from None
    return parse_recipe(data, source=str(path))


def parse_recipe(data: dict[str, Any], *, source: str = "recipe") -> Recipe:
    """Validate a recipe already read into a dict (see ``load_recipe``)."""
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise RecipeError(f"{source}: unknown key '{unknown[0]}'. Known: {sorted(TOP_KEYS)}")
    recipe = Recipe(
        source=source,
        passes=tuple(
            _pass_entry(source, i, e) for i, e in enumerate(_tables(source, data, "passes"))
        ),
        lower=tuple(
            _lower_entry(source, i, e) for i, e in enumerate(_tables(source, data, "lower"))
        ),
        eval_split=data.get("eval_split", "test"),
        calibration_windows=data.get("calibration_windows", 256),
    )
    if recipe.eval_split not in ("train", "val", "test"):
        raise RecipeError(f"{source}: eval_split: must be train, val or test")
    cal = recipe.calibration_windows
    if not isinstance(cal, int) or isinstance(cal, bool) or cal < 1:
        raise RecipeError(f"{source}: calibration_windows: must be an integer >= 1, got {cal!r}")
    recipe.make_passes()
    recipe.build_configs()
    return recipe


def _tables(source: str, data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise RecipeError(f"{source}: {key}: must be an array of tables ([[{key}]])")
    return value


def _pass_entry(source: str, i: int, entry: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = entry.get("pass")
    if not isinstance(name, str):
        raise RecipeError(f"{source}: passes[{i}].pass: missing or not a string (a pass name)")
    return name, {k: v for k, v in entry.items() if k != "pass"}


def _lower_entry(source: str, i: int, entry: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(entry) - LOWER_KEYS)
    if unknown:
        raise RecipeError(
            f"{source}: lower[{i}]: unknown key '{unknown[0]}'. Known: {sorted(LOWER_KEYS)}"
        )
    if "options" in entry and not isinstance(entry["options"], dict):
        raise RecipeError(f"{source}: lower[{i}].options: must be a table")
    try:
        json.dumps(entry)
    except TypeError:  # TOML dates and times: not JSON, so not for a manifest
        raise RecipeError(
            f"{source}: lower[{i}]: values must be strings, numbers or tables"
        ) from None
    return dict(entry)
