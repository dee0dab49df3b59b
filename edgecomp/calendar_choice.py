"""``--calendar auto``: keep calendar features only where they win on validation.

The choice is made on the mean validation MAE (raw units, observed values only, the figure the
training summary prints), never on test data. Two ways to compare, picked by the epoch budget:

* **full**: train with and without calendar features for the full ``epochs`` and keep the better
  checkpoint. Used when a probe would not be cheaper (``epochs`` small).
* **probe**: train both variants for ``probe_epochs`` (same seed, same data, same windows),
  compare their validation MAE, then train only the winner for the full ``epochs``. Costs
  ``2 * probe + epochs`` epochs instead of ``2 * epochs``; the choice rests on the early epochs,
  and the summary says so.

A data set that cannot carry calendar features (a business-day grid, a sampling period beyond a
month) is trained without, with the reason in the summary.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecomp.data import DataConfig, DataError, prepare
from edgecomp.data.summary import default_calendar
from edgecomp.workflow import TrainOutcome, evaluate, train_checkpoint

__all__ = ["CalendarChoice", "probe_epochs_for", "train_with_calendar_choice"]

PROBE_FRACTION = 0.2  # a probe runs this fraction of the epochs (at least one)


@dataclass(frozen=True)
class CalendarChoice:
    """What ``--calendar auto`` chose, and on which figures.

    Attributes:
        chosen: The calendar features kept (empty: trained without).
        tried: The calendar features tried (empty: none apply to this data).
        val_mae: Mean validation MAE without and with them (raw units); None where not trained.
        method: ``"full"`` (both trained fully), ``"probe"`` (both for ``probe_epochs``, then the
            winner fully) or ``"none"`` (no calendar variant could be trained).
        probe_epochs: Epochs of each probe run (method ``"probe"``), else None.
        reason: Why no calendar variant was trained (method ``"none"``), else "".
    """

    chosen: tuple[str, ...]
    tried: tuple[str, ...]
    val_mae: dict[str, float | None]
    method: str
    probe_epochs: int | None = None
    reason: str = ""

    def summary(self) -> str:
        """One line for the training summary."""
        if self.method == "none":
            kept = f"with {', '.join(self.chosen)}" if self.chosen else "without calendar features"
            return f"calendar: trained {kept} ({self.reason})"
        without, with_ = self.val_mae["without"], self.val_mae["with"]
        how = (
            f"{self.probe_epochs}-epoch probes"
            if self.method == "probe"
            else "full training of both"
        )
        kept = f"kept with {', '.join(self.chosen)}" if self.chosen else "kept without"
        return (
            f"calendar auto ({', '.join(self.tried)}): validation MAE {without:.4g} without, "
            f"{with_:.4g} with ({with_ / without - 1:+.1%}, {how}); {kept}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe record, kept in the evaluation (``eval.json``) as ``calendar``."""
        return {**dataclasses.asdict(self), "chosen": list(self.chosen), "tried": list(self.tried)}


def probe_epochs_for(epochs: int) -> int | None:
    """Probe length for an epoch budget, or None when training both fully is no dearer."""
    probe = max(1, math.ceil(epochs * PROBE_FRACTION))
    return probe if 2 * probe + epochs < 2 * epochs else None


def train_with_calendar_choice(
    data: str | Path,
    data_config: DataConfig,
    train_config: Any,
    out_dir: Path,
    *,
    console: Any = None,
    probe_epochs: int | None | str = "auto",
    mode: str = "auto",
) -> TrainOutcome:
    """Train at ``out_dir`` with or without calendar features, whichever has the lower val MAE.

    Args:
        data: The data file.
        data_config: Windowing; its ``calendar`` is ignored (both variants are tried).
        train_config: A ``TrainConfig``.
        out_dir: Checkpoint folder of the kept model.
        console: A rich console for progress lines, or None.
        probe_epochs: ``"auto"`` (``probe_epochs_for``), None (train both fully) or a number of
            epochs per probe run.
        mode: ``"auto"`` (compare) or ``"on"`` (train with the calendar features suited to the
            sampling period, without comparing; without them where none applies).

    Returns:
        The kept model's outcome; ``evaluation["calendar"]`` holds ``CalendarChoice.to_dict()``.
    """
    say = (lambda text: None) if console is None else (lambda t: console.print(t, highlight=False))
    plain = dataclasses.replace(data_config, calendar=None)
    names, calendar, reason = _calendar_variant(data, plain)
    if calendar is None or mode == "on":
        config = plain if calendar is None else calendar
        outcome = train_checkpoint(data, config, train_config, out_dir, console=console)
        chosen = names if calendar is not None else ()
        why = reason or "asked for with --calendar on"
        choice = CalendarChoice(chosen, names, {"without": None, "with": None}, "none", None, why)
        return _finish(outcome, choice, say)
    if probe_epochs == "auto":
        probe_epochs = probe_epochs_for(train_config.epochs)
    if probe_epochs is None:
        return _full(data, (plain, calendar), names, train_config, out_dir, console, say)
    return _probe(data, (plain, calendar), names, train_config, out_dir, console, say, probe_epochs)


def _calendar_variant(data, plain: DataConfig) -> tuple[tuple[str, ...], Any, str]:
    """(calendar names, the config with them or None, why none)."""
    period = prepare(data, plain).report.period_s
    names = default_calendar(period) if period else ()
    if not names:
        return (), None, "no calendar feature applies to this sampling period"
    config = dataclasses.replace(plain, calendar=names)
    try:
        prepare(data, config)
    except DataError as exc:  # e.g. a business-day grid
        return names, None, str(exc)
    return names, config, ""


def _val_mae(data, config: DataConfig, outcome: TrainOutcome) -> float:
    metrics = evaluate(outcome.model, prepare(data, config), "val")["model"]["mae"]
    return float(np.mean([v for v in metrics if v is not None]))


def _full(data, configs, names, train_config, out_dir, console, say) -> TrainOutcome:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".edgecomp-calendar-", dir=out_dir) as tmp:
        outcomes = []  # both trained inside out_dir (one filesystem), the winner moved up
        for config, label in zip(configs, ("without", "with"), strict=True):
            say(f"calendar auto: training {label} calendar features ({', '.join(names)})")
            folder = Path(tmp) / label
            outcomes.append(train_checkpoint(data, config, train_config, folder, console=console))
        maes = [_val_mae(data, c, o) for c, o in zip(configs, outcomes, strict=True)]
        win = int(maes[1] < maes[0])
        kept = _move(outcomes[win], out_dir)
    choice = CalendarChoice(names if win else (), names, _pair(maes), "full")
    return _finish(kept, choice, say)


def _probe(data, configs, names, train_config, out_dir, console, say, epochs) -> TrainOutcome:
    probe = dataclasses.replace(train_config, epochs=epochs)
    maes = []
    with tempfile.TemporaryDirectory(prefix="edgecomp-calendar-") as tmp:
        for config, label in zip(configs, ("without", "with"), strict=True):
            say(f"calendar auto: {epochs}-epoch probe {label} calendar ({', '.join(names)})")
            outcome = train_checkpoint(data, config, probe, Path(tmp) / label)
            maes.append(_val_mae(data, config, outcome))
    win = int(maes[1] < maes[0])
    choice = CalendarChoice(names if win else (), names, _pair(maes), "probe", epochs)
    kept = "with" if win else "without"
    say(f"calendar auto: the probes chose {kept}; training it for {train_config.epochs} epochs")
    outcome = train_checkpoint(data, configs[win], train_config, out_dir, console=console)
    return _finish(outcome, choice, say)


def _pair(maes: list[float]) -> dict[str, float | None]:
    return {"without": maes[0], "with": maes[1]}


def _finish(outcome: TrainOutcome, choice: CalendarChoice, say):
    import json

    from edgecomp._io import atomic_write_text

    outcome.evaluation["calendar"] = choice.to_dict()
    atomic_write_text(outcome.path / "eval.json", json.dumps(outcome.evaluation, indent=2))
    say(choice.summary())
    return outcome


def _move(outcome: TrainOutcome, out: Path) -> TrainOutcome:
    """Move a trained checkpoint's files into the folder ``out``, as training there writes them:
    each replaces the entry of its name (folders such as ``tb`` merge); nothing else in ``out``
    is touched (it may be the user's own folder, holding the data file)."""
    _merge(outcome.path, out)
    outcome.path = out
    return outcome


def _merge(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        target = dst / item.name
        if item.is_dir() and target.is_dir():
            _merge(item, target)
        else:
            item.replace(target)  # a folder where a file goes (or back): an OSError naming it
