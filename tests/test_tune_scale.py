"""edgecomp tune across workers and machines: exact budget, dead workers, hosts.

The study logic runs for real (optuna, SQLite, worker processes killed with SIGKILL); only the
measurement is a stand-in that sleeps and returns numbers, since what is tested here is the
scheduling of trials, not what a trial measures.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

optuna = pytest.importorskip("optuna")

from edgecomp.tune import TuneConfig, TuneError  # noqa: E402
from edgecomp.tune.evaluate import Constraints  # noqa: E402
from edgecomp.tune.study import host, run_study  # noqa: E402

SPACE = {"precision": ("fp32", "int8"), "calibration_windows": (64, 128, 256)}

WORKER = textwrap.dedent(
    """
    import sys, time
    from edgecomp.tune import TuneConfig
    from edgecomp.tune.evaluate import Constraints
    from edgecomp.tune.study import run_study

    storage, trials, sleep_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

    class Measure:
        constraints = Constraints()

        def __call__(self, recipe, name):
            time.sleep(sleep_s)
            return {"error_increase": 0.001, "error_abs": 0.01, "p50_ms": sleep_s,
                    "p99_ms": sleep_s, "size_bytes": 1000 + len(name)}

    space = {"precision": ("fp32", "int8"), "calibration_windows": (64, 128, 256)}
    config = TuneConfig(strategy="random", trials=trials, storage=storage, heartbeat_s=1)
    run_study(config, space, Measure(), needs_calibration=frozenset({"int8"}))
    """
)


class _Measure:
    constraints = Constraints()

    def __call__(self, recipe, name):
        return {
            "error_increase": 0.0,
            "error_abs": 0.0,
            "p50_ms": 0.1,
            "p99_ms": 0.1,
            "size_bytes": 1000,
        }


def _worker(storage: str, trials: int, sleep_s: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, storage, str(trials), str(sleep_s)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _states(storage: str) -> list[str]:
    study = optuna.load_study(study_name="edgecomp-tune", storage=storage)
    return [t.state.name for t in study.get_trials(deepcopy=False)]


def test_two_workers_run_exactly_the_budget(tmp_path):
    # setup
    storage = f"sqlite:///{tmp_path}/study.db"
    run_study(  # create the study first, so the workers do not race on the schema
        TuneConfig(strategy="random", trials=1, storage=storage),
        SPACE,
        _Measure(),
        needs_calibration=frozenset({"int8"}),
    )
    # execute
    workers = [_worker(storage, 6, 0.3) for _ in range(2)]
    errors = [w.communicate(timeout=240)[1].decode() for w in workers]
    # assert
    assert [w.returncode for w in workers] == [0, 0], errors
    states = _states(storage)
    assert states.count("COMPLETE") + states.count("FAIL") == 6, states


def test_a_killed_workers_trial_is_marked_failed(tmp_path):
    # setup: a worker whose trial takes far longer than the test waits
    storage = f"sqlite:///{tmp_path}/study.db"
    worker = _worker(storage, 3, 120.0)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if "RUNNING" in _states(storage):
                break
        except (KeyError, Exception):  # study not created yet
            pass
        time.sleep(0.5)
    else:
        worker.kill()
        pytest.fail("the worker never started a trial")
    # execute: kill -9 mid-trial, wait past the grace period, start another worker
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    time.sleep(3)
    config = TuneConfig(strategy="random", trials=3, storage=storage, heartbeat_s=1)
    run_study(config, SPACE, _Measure(), needs_calibration=frozenset({"int8"}))
    # assert
    states = _states(storage)
    assert "RUNNING" not in states, states
    assert states.count("FAIL") == 1, states
    assert states.count("COMPLETE") + states.count("FAIL") == 3, states


def test_a_study_refuses_a_second_host_unless_asked(tmp_path):
    # setup: a study whose only trial was measured on another machine
    storage = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(storage=storage, study_name="edgecomp-tune")
    elsewhere = "gateway-7 / Cortex-A76 / aarch64 / 4 cores"
    study.add_trial(optuna.trial.create_trial(value=1.0, user_attrs={"host": elsewhere}))
    more = TuneConfig(strategy="random", trials=2, storage=storage)
    # execute / assert
    with pytest.raises(TuneError, match="gateway-7.*--allow-mixed-hosts"):
        run_study(more, SPACE, _Measure(), needs_calibration=frozenset({"int8"}))
    mixed = TuneConfig(strategy="random", trials=2, storage=storage, allow_mixed_hosts=True)
    study, _ = run_study(mixed, SPACE, _Measure(), needs_calibration=frozenset({"int8"}))
    hosts = [t.user_attrs["host"] for t in study.get_trials()]
    assert hosts == [elsewhere, host()]


def test_bad_heartbeat_is_refused():
    with pytest.raises(TuneError, match="heartbeat_s"):
        TuneConfig(heartbeat_s=0.1)
