"""edgecomp tune: the space, recipes, constraints, the front, the study on real traffic data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgecomp.cli import main
from edgecomp.passes.recipe import load_recipe
from edgecomp.targets import get_profile
from edgecomp.tune import Constraints, SpaceError, TuneConfig, TuneError, tune
from edgecomp.tune.output import choose, to_toml
from edgecomp.tune.space import default_space, load_space, recipe_for, recipe_key

pytest.importorskip("optuna", reason="edgecomp[tune] (optuna) is not installed")

CALIB = frozenset({"int8"})
SMALL_SPACE = """[space]
precision = ["fp32", "int8"]
prune_ratio = [0.0]
calibration_windows = [64]
calibration_method = ["minmax"]
keep_float = ["none"]
engine = ["auto"]
lowering = ["auto"]
"""


def _params(**kw):
    base = {
        "precision": "int8",
        "prune_ratio": 0.0,
        "prune_importance": "l2",
        "calibration_windows": 64,
        "calibration_method": "minmax",
        "keep_float": "none",
        "student": "none",
    }
    return {**base, **kw}


def _recipe(**kw):
    return recipe_for(
        _params(**kw), target="x86-64-avx2", finetune_epochs=3, needs_calibration=CALIB
    )


def test_default_space_offers_what_the_target_emits():
    space = default_space(get_profile("x86-64-avx2"))
    assert set(space["precision"]) <= {"fp32", "int8", "int8-dynamic", "int4", "mixed"}
    assert "fp32" in space["precision"] and "int8" in space["precision"]
    assert space["student"][0] == "none" and "gru-16" in space["student"]
    assert "student" not in default_space(get_profile("x86-64-avx2"), students=False)


def test_space_file_narrows_and_names_bad_dimensions(tmp_path):
    base = default_space(get_profile("x86-64-avx2"))
    good = tmp_path / "space.toml"
    good.write_text("[space]\nprune_ratio = [0.0, 0.5]\n")
    assert load_space(good, base)["prune_ratio"] == (0.0, 0.5)
    bad = tmp_path / "bad.toml"
    bad.write_text("[space]\nwidth = [1]\n")
    with pytest.raises(SpaceError, match=r"bad.toml: space.width: unknown dimension"):
        load_space(bad, base)
    bad.write_text("[space]\nprune_ratio = [0.33]\n")
    with pytest.raises(SpaceError, match=r"space.prune_ratio: 0.33 is not one of"):
        load_space(bad, base)


def test_irrelevant_choices_share_one_canonical_recipe():
    fp32_a = _recipe(precision="fp32", calibration_windows=64, keep_float="input")
    fp32_b = _recipe(precision="fp32", calibration_windows=1024, keep_float="both")
    unpruned = [_recipe(prune_importance=c) for c in ("l2", "taylor")]
    assert recipe_key(fp32_a) == recipe_key(fp32_b)
    assert recipe_key(unpruned[0]) == recipe_key(unpruned[1])
    assert recipe_key(_recipe(keep_float="input")) != recipe_key(_recipe())


def test_recipe_composes_distill_prune_finetune_and_reads_back_as_toml(tmp_path):
    recipe = _recipe(
        student="tcn-16", prune_ratio=0.5, prune_importance="taylor", keep_float="both"
    )
    assert [p["pass"] for p in recipe["passes"]] == ["distill", "prune", "finetune"]
    assert recipe["passes"][0]["hparams"] == {"channels": 16}
    path = tmp_path / "recipe.toml"
    path.write_text(to_toml(recipe, "a comment\non two lines"))
    assert tomllib.loads(path.read_text()) == recipe
    parsed = load_recipe(path)
    assert [name for name, _ in parsed.passes] == ["distill", "prune", "finetune"]
    assert parsed.build_configs()[0][1].options == {
        "calibration_method": "minmax",
        "keep_float": ["input", "output"],
    }


def test_constraints_violations_are_normalized_and_only_for_set_limits():
    c = Constraints(max_error_increase=0.01, max_size_kb=100)
    measured = {"error_increase": 0.02, "error_abs": 5.0, "p99_ms": 3.0, "size_bytes": 51200}
    v = c.violations(measured)
    assert set(v) == {"error_increase", "size_kb"}
    assert v["error_increase"] == pytest.approx(1.0)
    assert v["size_kb"] == pytest.approx(-0.5)
    assert c.describe() == "MAE +1 % at every step, size <= 100 KiB"


def _row(trial, err, p99, size, feasible):
    m = {"error_increase": err, "p50_ms": p99 / 2, "p99_ms": p99, "size_bytes": size}
    return {
        "trial": trial,
        "summary": f"r{trial}",
        "measured": m,
        "violations": {"error_increase": -1.0 if feasible else err},
        "feasible": feasible,
    }


def test_choose_takes_the_fastest_feasible_and_explains_when_none():
    rows = [_row(0, 0.0, 5.0, 10, True), _row(1, 0.005, 2.0, 20, True), _row(2, 0.5, 1.0, 5, False)]
    assert choose(rows, "p50_ms")["trial"] == 1
    assert choose(rows, "size_bytes")["trial"] == 0
    with pytest.raises(TuneError, match=r"no recipe meets the constraints; the closest:") as err:
        choose([r for r in rows if not r["feasible"]], "p50_ms")
    assert "trial 2: r2" in str(err.value)


@pytest.fixture(scope="module")
def lstm(traffic_checkpoints, traffic_path):
    from edgecomp.workflow import ingest

    return ingest(str(traffic_checkpoints["lstm"]), traffic_path)


def _space_file(tmp_path) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(SMALL_SPACE)
    return path


def test_tune_writes_front_recipe_and_a_verified_artifact(lstm, tmp_path):
    import edgecomp_runtime

    # setup
    model, dataset = lstm
    config = TuneConfig(strategy="grid", trials=4, storage=f"sqlite:///{tmp_path}/s.db")
    # execute
    result = tune(
        model,
        dataset,
        config,
        Constraints(max_error_increase=0.05),
        tmp_path / "out",
        space_file=_space_file(tmp_path),
        students=False,
    )
    # assert
    assert len(result.rows) == 2  # the grid has two distinct recipes; the sampler stops there
    assert result.chosen is not None and result.chosen["feasible"]
    out = tmp_path / "out"
    assert {"results.json", "pareto.md", "pareto.png", "recipe.toml"} <= {
        p.name for p in out.iterdir()
    }
    recipe = load_recipe(out / "recipe.toml")
    assert recipe.eval_split == "test"
    assert recipe.lower[0]["precision"] == result.chosen["recipe"]["lower"][0]["precision"]
    loaded = edgecomp_runtime.load(result.artifact)
    assert loaded.manifest["metrics"]["split"] == "test"
    assert json.loads((out / "results.json").read_text())["chosen"] == result.chosen["trial"]


def test_study_resumes_and_reuses_measured_recipes(lstm, tmp_path):
    model, dataset = lstm
    storage = f"sqlite:///{tmp_path}/s.db"
    args = dict(space_file=_space_file(tmp_path), students=False, build_chosen=False)
    first = tune(
        model,
        dataset,
        TuneConfig(strategy="random", trials=2, storage=storage),
        Constraints(),
        tmp_path / "a",
        **args,
    )
    second = tune(
        model,
        dataset,
        TuneConfig(strategy="random", trials=5, storage=storage),
        Constraints(),
        tmp_path / "b",
        **args,
    )
    import optuna

    study = optuna.load_study(study_name="edgecomp-tune", storage=storage)
    assert len(study.trials) == 5  # 2 from the first run, 3 more from the resumed one
    assert len(first.rows) <= 2 and len(second.rows) == 2  # only two distinct recipes exist
    reused = [t for t in study.trials if "reused_from" in t.user_attrs["measured"]]
    assert len(reused) == 3  # 5 trials, 2 distinct recipes: 3 measurements were looked up
    first_recipe = study.trials[0].user_attrs["recipe"]  # the warm start: as trained, int8
    assert first_recipe["passes"] == [] and first_recipe["lower"][0]["precision"] == "int8"


def test_ctrl_c_stops_cleanly_and_keeps_the_study(lstm, tmp_path):
    model, dataset = lstm
    storage = f"sqlite:///{tmp_path}/s.db"

    def interrupt(finished, measured):
        raise KeyboardInterrupt

    result = tune(
        model,
        dataset,
        TuneConfig(strategy="random", trials=5, storage=storage),
        Constraints(),
        tmp_path / "out",
        space_file=_space_file(tmp_path),
        students=False,
        on_trial=interrupt,
    )
    assert result.interrupted and result.artifact is None
    assert len(result.rows) == 1
    import optuna

    assert len(optuna.load_study(study_name="edgecomp-tune", storage=storage).trials) == 1


def test_cli_reports_the_closest_recipes_when_none_fits(
    traffic_checkpoints, traffic_path, tmp_path
):
    result = CliRunner().invoke(
        main,
        [
            "tune",
            str(traffic_checkpoints["lstm"]),
            "--data",
            str(traffic_path),
            "--sampler",
            "grid",
            "--trials",
            "2",
            "--no-students",
            "--space",
            str(_space_file(tmp_path)),
            "--max-size-kb",
            "0.5",
            "--out-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "no recipe meets the constraints; the closest:" in result.output
    assert "Traceback" not in result.output
    assert (tmp_path / "results.json").exists() and not (tmp_path / "recipe.toml").exists()


def test_cli_refuses_a_bad_percentage(traffic_checkpoints, traffic_path, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "tune",
            str(traffic_checkpoints["lstm"]),
            "--data",
            str(traffic_path),
            "--max-error-increase",
            "one%",
            "--out-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 2
    assert "--max-error-increase must be a number >= 0 or a percentage" in result.output


def test_two_worker_processes_share_one_sqlite_study(traffic_checkpoints, traffic_path, tmp_path):
    # setup: two `edgecomp tune` processes on one study, 4 trials in all
    db = tmp_path / "shared.db"
    cmd = [
        str(Path(sys.executable).with_name("edgecomp")),
        "tune",
        str(traffic_checkpoints["lstm"]),
        "--data",
        str(traffic_path),
        "--sampler",
        "random",
        "--trials",
        "4",
        "--no-students",
        "--no-build",
        "--space",
        str(_space_file(tmp_path)),
        "--storage",
        f"sqlite:///{db}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # execute
    procs = [
        subprocess.Popen(
            [*cmd, "--out-dir", str(tmp_path / f"w{i}")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    # assert
    assert [p.returncode for p in procs] == [0, 0], outputs
    import optuna

    trials = optuna.load_study(study_name="edgecomp-tune", storage=f"sqlite:///{db}").trials
    assert 4 <= len(trials) <= 5  # the shared budget; a worker may start one before it sees it
    assert len({t.number for t in trials}) == len(trials)


def test_multi_objective_search_records_values_and_constraints(lstm, tmp_path):
    import optuna

    model, dataset = lstm
    storage = f"sqlite:///{tmp_path}/s.db"
    config = TuneConfig(strategy="nsga2", trials=2, storage=storage, seed=1)
    result = tune(
        model,
        dataset,
        config,
        Constraints(max_error_increase=0.05, max_size_kb=10_000),
        tmp_path / "out",
        space_file=_space_file(tmp_path),
        students=False,
        build_chosen=False,
    )
    study = optuna.load_study(study_name="edgecomp-tune", storage=storage)
    assert len(study.directions) == 3
    for trial in study.trials:
        m = trial.user_attrs["measured"]
        assert trial.values == [m["error_increase"], m["p50_ms"], m["size_bytes"]]
        assert set(trial.constraints) == {"error_increase", "size_kb"}
    assert result.chosen is not None and any(r["pareto"] for r in result.rows)


def test_mixed_choice_keeps_sensitive_layers_in_float_within_the_budget(lstm, tmp_path):
    model, dataset = lstm
    space = tmp_path / "space.toml"
    space.write_text(SMALL_SPACE.replace('["fp32", "int8"]', '["mixed-int4"]'))
    result = tune(
        model,
        dataset,
        TuneConfig(strategy="random", trials=1, storage=f"sqlite:///{tmp_path}/s.db"),
        Constraints(max_error_increase=0.01),
        tmp_path / "out",
        space_file=space,
        students=False,
        build_chosen=False,
    )
    (row,) = result.rows
    built = row["measured"]["recipe"]["lower"][0]
    assert built["precision"] == "int4" and isinstance(built["options"]["keep_float"], list)
    assert row["measured"]["error_increase"] <= 0.01 + 1e-3  # the float artifact is the plan's base
    written = tomllib.loads((tmp_path / "out" / "recipe.toml").read_text())
    assert written["lower"][0]["options"]["keep_float"] == built["options"]["keep_float"]


def test_mixed_is_offered_only_with_a_relative_error_limit():
    profile = get_profile("x86-64-avx2")
    assert "mixed-int4" in default_space(profile, mixed=True)["precision"]
    assert not any(p.startswith("mixed") for p in default_space(profile)["precision"])
