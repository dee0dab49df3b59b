"""The optuna study behind `edgecomp tune`: samplers, the objective, resumable storage, progress.

The study lives in a storage URL (SQLite file by default), so an interrupted run resumes where it
stopped and several processes or machines can work on one study: each runs the same command with
the same ``--storage`` and ``--study-name``; the trial budget is shared (MaxTrialsCallback).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgecomp.tune.evaluate import Evaluator, TuneError
from edgecomp.tune.space import recipe_for, recipe_key

__all__ = ["OBJECTIVES", "STRATEGIES", "TuneConfig", "run_study"]

# strategy -> does it optimize several objectives at once (error, latency, size)?
STRATEGIES: dict[str, bool] = {
    "grid": False,
    "random": False,
    "tpe": False,
    "gp": False,
    "nsga2": True,
    "motpe": True,
}
# single-objective strategies minimize one measured quantity
# latency is the median (robust on a shared host); the p99 is what --max-p99-ms limits
OBJECTIVES = {"latency": "p50_ms", "size": "size_bytes", "error": "error_increase"}
_MULTI = ("error_increase", "p50_ms", "size_bytes")


@dataclass(frozen=True)
class TuneConfig:
    """How to search.

    Attributes:
        target: Target profile name.
        strategy: A key of ``STRATEGIES``.
        trials: Total trials of the study (shared by every worker, resumed runs included).
        timeout: Seconds this process may search (None: no limit).
        objective: For single-objective strategies, a key of ``OBJECTIVES``.
        seed: Sampler seed.
        finetune_epochs: Fine-tuning epochs after pruning.
        storage: Optuna storage URL (e.g. ``sqlite:///study.db``, ``postgresql://...``).
        study_name: Name of the study in ``storage``.
    """

    target: str = "x86-64-avx2"
    strategy: str = "tpe"
    trials: int = 30
    timeout: float | None = None
    objective: str = "latency"
    seed: int = 0
    finetune_epochs: int = 10
    storage: str = "sqlite:///edgecomp-tune.db"
    study_name: str = "edgecomp-tune"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise TuneError(f"unknown strategy '{self.strategy}'. Available: {list(STRATEGIES)}")
        if self.objective not in OBJECTIVES:
            raise TuneError(f"unknown objective '{self.objective}'. Available: {list(OBJECTIVES)}")
        if self.trials < 1:
            raise TuneError("trials must be at least 1")


def run_study(
    config: TuneConfig,
    space: dict[str, tuple],
    evaluator: Evaluator,
    *,
    needs_calibration: frozenset,
    on_trial: Callable[[int, dict[str, Any] | None], None] | None = None,
) -> tuple[Any, bool]:
    """Search until the study holds ``config.trials`` finished trials, the grid is exhausted,
    the timeout passes or Ctrl-C.

    Returns:
        (the optuna study, True when interrupted by Ctrl-C). Finished trials are in storage
        either way.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(config, space)
    done = _finished(study)
    if not study.trials and config.strategy != "grid":
        study.enqueue_trial(_warm_start(space))
    objective = _objective(config, space, evaluator, needs_calibration)
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)

    def callback(study: Any, trial: Any) -> None:
        if on_trial is not None:
            on_trial(_finished(study), trial.user_attrs.get("measured"))

    try:
        study.optimize(
            objective,
            n_trials=max(0, config.trials - done),
            timeout=config.timeout,
            catch=(ValueError, RuntimeError),
            callbacks=[optuna.study.MaxTrialsCallback(config.trials, states=states), callback],
            gc_after_trial=True,
        )
    except KeyboardInterrupt:
        return study, True
    return study, False


def _study(config: TuneConfig, space: dict[str, tuple]) -> Any:

    multi = STRATEGIES[config.strategy]
    sampler = _sampler(config, space)
    kwargs = {"directions": ["minimize"] * 3} if multi else {"direction": "minimize"}
    try:
        return _create(config, sampler, kwargs)
    except ValueError as exc:  # e.g. an existing study with other directions
        raise TuneError(f"study '{config.study_name}' in {config.storage}: {exc}") from None
    except ImportError as exc:  # the URL's database driver is missing
        raise TuneError(
            f"storage {config.storage}: its database driver is not installed ({exc}); e.g. "
            "pip install psycopg2-binary and use postgresql+psycopg2://user@host/db"
        ) from None


def _create(config: TuneConfig, sampler: Any, kwargs: dict[str, Any]) -> Any:
    """create_study, retried: workers starting together on an empty database race to create
    its tables (PostgreSQL refuses the second CREATE TYPE); the loser finds them a moment later."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(4):
        try:
            return optuna.create_study(
                storage=config.storage,
                study_name=config.study_name,
                sampler=sampler,
                load_if_exists=True,
                **kwargs,
            )
        except SQLAlchemyError as exc:
            if attempt == 3:
                raise TuneError(f"storage {config.storage}: {str(exc).splitlines()[0]}") from None
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def _sampler(config: TuneConfig, space: dict[str, tuple]) -> Any:
    """TPE, GP and NSGA-II read each trial's constraints (``Trial.set_constraint``)."""
    from optuna import samplers

    seed, startup = config.seed, max(2, min(10, config.trials // 3))
    if config.strategy == "grid":
        return samplers.GridSampler({k: list(v) for k, v in space.items()}, seed=seed)
    if config.strategy == "random":
        return samplers.RandomSampler(seed=seed)
    if config.strategy == "gp":
        return samplers.GPSampler(seed=seed, n_startup_trials=startup)
    if config.strategy == "nsga2":
        population = max(4, min(20, config.trials // 4))
        return samplers.NSGAIISampler(seed=seed, population_size=population)
    return samplers.TPESampler(  # tpe and motpe
        seed=seed, n_startup_trials=startup, multivariate=True
    )


def _objective(
    config: TuneConfig,
    space: dict[str, tuple],
    evaluator: Evaluator,
    needs_calibration: frozenset,
) -> Callable[[Any], Any]:
    def objective(trial: Any) -> Any:
        params = {name: trial.suggest_categorical(name, list(space[name])) for name in space}
        recipe = recipe_for(
            params,
            target=config.target,
            finetune_epochs=config.finetune_epochs,
            needs_calibration=needs_calibration,
        )
        key = recipe_key(recipe)
        trial.set_user_attr("recipe", recipe)
        trial.set_user_attr("key", key)
        measured = _measured_before(trial.study, key)
        if measured is None:
            began = time.perf_counter()
            try:
                measured = evaluator(recipe, hashlib.sha256(key.encode()).hexdigest()[:12])
            except (ValueError, RuntimeError) as exc:
                trial.set_user_attr("error", str(exc).splitlines()[0][:500])
                raise
            measured["seconds"] = time.perf_counter() - began
        trial.set_user_attr("measured", measured)
        violations = evaluator.constraints.violations(measured)
        trial.set_user_attr("violations", violations)
        for name, value in violations.items():
            trial.set_constraint(name, value)
        return _values(config, measured)

    return objective


def _warm_start(space: dict[str, tuple]) -> dict[str, Any]:
    """The first trial of a new study: the model as trained, lowered at the target's usual
    precision (int8 where offered) with default calibration. It is the known-safe corner of the
    space, so the sampler has a feasible point to improve on from the start."""
    preferred = {"precision": "int8", "calibration_windows": 256, "calibration_method": "minmax"}
    params = {}
    for name, choices in space.items():
        want = preferred.get(name, {"prune_ratio": 0.0, "student": "none"}.get(name, "none"))
        params[name] = want if want in choices else choices[0]
    return params


def _measured_before(study: Any, key: str) -> dict[str, Any] | None:
    """What an earlier finished trial (of any worker) measured for the same recipe."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.user_attrs.get("key") == key and "measured" in trial.user_attrs:
            return dict(trial.user_attrs["measured"], reused_from=trial.number)
    return None


def _values(config: TuneConfig, measured: dict[str, Any]) -> Any:
    if STRATEGIES[config.strategy]:
        return tuple(float(measured[k]) for k in _MULTI)
    value = float(measured[OBJECTIVES[config.objective]])
    return value if math.isfinite(value) else float("inf")


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.FAIL)
    return len(study.get_trials(deepcopy=False, states=states))
