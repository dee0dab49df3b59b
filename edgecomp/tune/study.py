"""The optuna study behind `edgecomp tune`: samplers, the objective, resumable storage, progress.

The study lives in a storage URL (SQLite file by default), so an interrupted run resumes where it
stopped and several processes or machines can work on one study: each runs the same command with
the same ``--storage`` and ``--study-name``.

Working at scale:
- The trial budget is exact across workers: trial numbers are handed out by the storage, and a
  trial runs only when fewer than ``trials`` trials with lower numbers are running or finished;
  the others are pruned as over budget and stop their worker.
- Every worker beats a heartbeat into the storage; a trial whose worker died (kill -9, a lost
  machine) is marked failed by the next worker instead of staying RUNNING forever.
- Every trial records the host that measured it. Latencies from different hosts are not
  comparable, so a study refuses a second host unless ``allow_mixed_hosts`` is set.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import socket
import time
import warnings
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
        allow_mixed_hosts: Let trials measured on different hosts share the study (their
            latencies are then compared across machines).
        heartbeat_s: Seconds between a worker's heartbeats; a RUNNING trial silent for twice
            this long is marked failed by the next worker.
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
    allow_mixed_hosts: bool = False
    heartbeat_s: float = 30.0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise TuneError(f"unknown strategy '{self.strategy}'. Available: {list(STRATEGIES)}")
        if self.objective not in OBJECTIVES:
            raise TuneError(f"unknown objective '{self.objective}'. Available: {list(OBJECTIVES)}")
        if self.trials < 1:
            raise TuneError("trials must be at least 1")
        if not math.isfinite(self.heartbeat_s) or self.heartbeat_s < 1:
            raise TuneError(f"heartbeat_s must be at least 1 second, got {self.heartbeat_s}")


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
    _check_hosts(study, config)
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


def host() -> str:
    """The measuring host, as trials record it: name, CPU model, architecture, cores."""
    return (
        f"{socket.gethostname()} / {_cpu_model()} / {platform.machine()} / {os.cpu_count()} cores"
    )


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace"):  # noqa: SIM115
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def _check_hosts(study: Any, config: TuneConfig) -> None:
    """Refuse to add this host's latencies to a study measured elsewhere (unless allowed)."""
    if config.allow_mixed_hosts:
        return
    here = host()
    recorded = {t.user_attrs.get("host") for t in study.get_trials(deepcopy=False)}
    others = sorted(h for h in recorded if h and h != here)
    if others:
        raise TuneError(
            f"study '{config.study_name}' holds trials measured on {others[0]}"
            f"{f' and {len(others) - 1} other host(s)' if len(others) > 1 else ''}; this is "
            f"{here}. Latencies from different hosts are not comparable: use another "
            "--study-name, or --allow-mixed-hosts to compare them anyway"
        )


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
                storage=_storage(config),
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


def _storage(config: TuneConfig) -> Any:
    """An RDB storage with heartbeats, so a dead worker's trial is failed, not RUNNING forever."""
    import optuna

    if not config.storage.startswith(("sqlite", "postgresql", "mysql", "oracle", "mssql")):
        return config.storage  # other storages (journal, in-memory URLs) as optuna reads them
    with warnings.catch_warnings():  # heartbeats are "experimental" in optuna since 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            config.storage,
            heartbeat_interval=max(1, int(config.heartbeat_s)),
            grace_period=max(2, int(2 * config.heartbeat_s)),
        )


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
    model = getattr(evaluator, "model", None)  # an evaluator without one tunes every option
    model_type = type(model.module) if model is not None else None

    def objective(trial: Any) -> Any:
        _claim_slot(trial, config.trials)
        trial.set_user_attr("host", host())
        params = {name: trial.suggest_categorical(name, list(space[name])) for name in space}
        recipe = recipe_for(
            params,
            target=config.target,
            finetune_epochs=config.finetune_epochs,
            needs_calibration=needs_calibration,
            model_type=model_type,
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


def _claim_slot(trial: Any, budget: int) -> None:
    """Run this trial only if fewer than ``budget`` lower-numbered trials run or finished.

    Trial numbers come from the storage, so every worker agrees on the order, and the study ends
    with exactly ``budget`` finished trials however many workers share it.
    """
    import optuna
    from optuna.trial import TrialState

    counted = (TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING)
    ahead = sum(
        1 for t in trial.study.get_trials(deepcopy=False, states=counted) if t.number < trial.number
    )
    if ahead >= budget:
        trial.set_user_attr("over_budget", True)
        trial.study.stop()
        raise optuna.TrialPruned(f"the study's budget of {budget} trials is taken")


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
    """What an earlier finished trial (of any worker on this host) measured for the same recipe."""
    from optuna.trial import TrialState

    here = host()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        same_host = trial.user_attrs.get("host", here) == here
        if trial.user_attrs.get("key") == key and "measured" in trial.user_attrs and same_host:
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
