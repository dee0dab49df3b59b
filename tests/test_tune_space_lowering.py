"""edgecomp tune offers only the lowerings that apply to the model it lowers (the backend says
which), a lowering asked by name that does not apply is refused as such, failed trials count."""

from __future__ import annotations

import pytest

from edgecomp.models import MODELS
from edgecomp.targets import get_profile, get_target
from edgecomp.targets.base import TargetError
from edgecomp.tune.space import default_space, recipe_for

PROFILE = "x86-64-avx2"


def _recipe(model_type, **params):
    base = {"precision": "int8", "prune_ratio": 0.0, "calibration_windows": 64, "student": "none"}
    recipe = recipe_for(
        {**base, **params},
        target=PROFILE,
        finetune_epochs=1,
        needs_calibration=frozenset({"int8"}),
        model_type=model_type,
    )
    return recipe["lower"][0].get("options", {})


def test_the_space_offers_lowerings_the_backend_says_apply():
    # setup
    profile = get_profile(PROFILE)
    onnx = get_target(profile.backend)
    # execute
    tcn = default_space(profile, students=False, model_type=MODELS["tcn"])["lowering"]
    stgnn = default_space(profile, students=False, model_type=MODELS["stgnn"])["lowering"]
    lstm = default_space(profile, students=False, model_type=MODELS["lstm"])["lowering"]
    tcn_students = default_space(profile, students=True, model_type=MODELS["tcn"])["lowering"]
    # assert: no hoisted/scan for a TCN or graph model alone (a TCN: its cone); a recurrent
    # student brings them
    assert tcn == ("auto", "default", "cone") and stgnn == ("auto", "default")
    assert {"hoisted", "scan"} <= set(lstm)
    assert {"hoisted", "scan"} <= set(tcn_students)
    assert not onnx.option_applies("lowering", "hoisted", MODELS["tcn"], "int8")
    assert onnx.option_applies("lowering", "hoisted", MODELS["gru"], "int8")
    assert not onnx.option_applies("lowering", "hoisted", MODELS["gru"], "int4")


def test_a_lowering_that_does_not_apply_to_the_lowered_model_is_left_to_auto():
    # execute / assert: the lowered model is the student when there is one
    assert "lowering" not in _recipe(MODELS["tcn"], lowering="hoisted")
    assert "lowering" not in _recipe(MODELS["lstm"], lowering="hoisted", precision="int4")
    assert "lowering" not in _recipe(MODELS["lstm"], lowering="scan", student="tcn-16")
    assert _recipe(MODELS["tcn"], lowering="hoisted", student="gru-16")["lowering"] == "hoisted"
    assert _recipe(MODELS["lstm"], lowering="scan")["lowering"] == "scan"
    assert _recipe(MODELS["tcn"], lowering="default")["lowering"] == "default"


def test_hoisted_asked_for_a_tcn_says_not_applicable(tmp_path, traffic_path, traffic_checkpoints):
    # setup
    from edgecomp.config import BuildConfig
    from edgecomp.workflow import build_artifact

    config = BuildConfig(precision="int8", options={"lowering": "hoisted", "engine": "onnx"})
    # execute / assert: named as not applicable to the architecture, not as a parity failure
    expected = r"'hoisted', which is not applicable to tcn at int8"
    with pytest.raises(TargetError, match=expected) as e:
        build_artifact(str(traffic_checkpoints["tcn"]), traffic_path, config, tmp_path / "a.pkg")
    assert "parity" not in str(e.value)


def test_failed_trials_are_counted_in_the_summary():
    # setup: a study with one finished and two failed trials
    optuna = pytest.importorskip("optuna")
    from edgecomp.tune.cli import _tally
    from edgecomp.tune.output import failed_trials
    from edgecomp.tune.run import TuneResult

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    recipe = {"passes": [], "lower": [{"target": PROFILE, "precision": "int8"}]}

    def objective(trial):
        trial.suggest_categorical("x", [0, 1, 2])
        trial.set_user_attr("recipe", recipe)
        if trial.number > 0:
            trial.set_user_attr("error", f"boom {trial.number}")
            raise ValueError("boom")
        return 1.0

    study.optimize(objective, n_trials=3, catch=(ValueError,))
    # execute
    failed = failed_trials(study)
    line = _tally(TuneResult([{"trial": 0}], None, None, False, None, failed))
    # assert
    assert [f["trial"] for f in failed] == [1, 2]
    assert "1 distinct recipes measured, 2 trials failed (first: trial 1" in line
    assert line.endswith(": boom 1)")
