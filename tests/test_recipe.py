"""Build recipes: errors name the file and key; passes run before lowering; the manifest records."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgecomp.passes.recipe import RecipeError, load_recipe

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "recipes"

GOOD = """
calibration_windows = 64

[[passes]]
pass = "prune"
ratio = 0.5
importance = "taylor"

[[passes]]
pass = "finetune"
epochs = 1

[[lower]]
target = "x86-64-avx2"
precision = "int8"
"""


def _write(tmp_path, text: str):
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def test_good_recipe_parses(tmp_path):
    recipe = load_recipe(_write(tmp_path, GOOD))
    assert [name for name, _ in recipe.passes] == ["prune", "finetune"]
    assert recipe.passes[0][1] == {"ratio": 0.5, "importance": "taylor"}
    assert recipe.calibration_windows == 64
    [(stem, config)] = recipe.build_configs()
    assert (stem, config.target, config.precision) == ("x86-64-avx2-int8", "x86-64-avx2", "int8")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[passes]]\npass = 'prune'\nratio = = 1\n", r"recipe\.toml: not valid TOML: .*line 3"),
        ("colour = 1", r"recipe\.toml: unknown key 'colour'"),
        ("[[passes]]\nratio = 0.5", r"recipe\.toml: passes\[0\]\.pass: missing"),
        ("[[passes]]\npass = 'shrink'", r"recipe\.toml: passes\[0\]\.pass: unknown pass 'shrink'"),
        (
            "[[passes]]\npass = 'prune'\nratio = 0.5\nratoi = 1",
            r"recipe\.toml: passes\[0\]: unknown key 'ratoi'",
        ),
        ("[[passes]]\npass = 'prune'\nratio = 2.0", r"recipe\.toml: passes\[0\]: 'ratio' must"),
        (
            "[[passes]]\npass = 'finetune'\n[[passes]]\npass = 'finetune'\nepochs = 0",
            r"recipe\.toml: passes\[1\]: TrainConfig\.epochs must be",
        ),
        ("[[lower]]\ntarget = 'pdp-11'", r"recipe\.toml: lower\[0\]\.target: unknown target"),
        ("[[lower]]\nprecision = 'int3'", r"recipe\.toml: lower\[0\]\.precision: .*'int3'"),
        ("[[lower]]\nspeed = 1", r"recipe\.toml: lower\[0\]: unknown key 'speed'"),
        ("[[lower]]\n[[lower]]", r"recipe\.toml: lower\[1\]\.name: .* used twice"),
        ("passes = 3", r"recipe\.toml: passes: must be an array of tables"),
        ("eval_split = 'dev'", r"recipe\.toml: eval_split: must be"),
    ],
)
def test_recipe_errors_name_file_and_key(tmp_path, text, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(_write(tmp_path, text))


def test_missing_recipe_file_is_named(tmp_path):
    with pytest.raises(RecipeError, match=r"nope\.toml: cannot read recipe"):
        load_recipe(tmp_path / "nope.toml")


def test_overrides(tmp_path):
    recipe = load_recipe(_write(tmp_path, GOOD))
    changed = recipe.with_overrides({"prune.ratio": 0.25}, precision="fp32", target=None)
    assert changed.passes[0][1]["ratio"] == 0.25
    assert changed.build_configs()[0][1].precision == "fp32"
    assert recipe.passes[0][1]["ratio"] == 0.5  # the original is untouched
    with pytest.raises(RecipeError, match="PASS.KEY with PASS among"):
        recipe.with_overrides({"distill.alpha": 0.1})
    with pytest.raises(RecipeError, match=r"passes\[0\]: 'ratio' must"):
        recipe.with_overrides({"prune.ratio": 7}).make_passes()


def test_cli_build_with_recipe_records_passes(tmp_path, traffic_checkpoints, traffic_path):
    # setup
    import edgecomp_runtime
    from edgecomp.checkpoint import load_checkpoint
    from edgecomp.cli import main
    from edgecomp.passes import count_params

    recipe = _write(tmp_path, GOOD)
    out = tmp_path / "pruned.edgepkg"
    saved = tmp_path / "pruned-ckpt"
    # execute
    result = CliRunner().invoke(
        main,
        [
            "build", str(traffic_checkpoints["lstm"]), "--data", str(traffic_path),
            "--recipe", str(recipe), "--set", "finetune.epochs=2", "--precision", "fp32",
            "-o", str(out), "--save-model", str(saved),
        ],
    )  # fmt: skip
    # assert
    assert result.exit_code == 0, result.output
    assert "prune: params" in result.output and "finetune: params" in result.output
    with zipfile.ZipFile(out) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    prune, finetune = manifest["recipe"]["passes"]
    assert (prune["_type"], prune["_data"]["ratio"], finetune["_data"]["epochs"]) == (
        "prune",
        0.5,
        2,
    )
    original, pruned = load_checkpoint(traffic_checkpoints["lstm"]), load_checkpoint(saved)
    assert prune["measured"]["before"]["params"] == count_params(original.module)
    assert prune["measured"]["after"]["params"] == count_params(pruned.module)
    assert finetune["measured"]["after"]["params"] == count_params(pruned.module)
    assert pruned.spec.hparams["hidden"] == 8 and manifest["spec"]["hparams"]["hidden"] == 8
    assert len(prune["measured"]["after"]["mae"]) == 4
    assert manifest["precision"] == "fp32"
    model = edgecomp_runtime.load(out)
    assert np.isfinite(model.predict(np.ones((16, 22), dtype=np.float32))).all()


def test_cli_recipe_error_is_one_line(tmp_path, traffic_checkpoints, traffic_path):
    from edgecomp.cli import main

    recipe = _write(tmp_path, "[[passes]]\npass = 'prune'\nratio = 0.5\nratoi = 1")
    result = CliRunner().invoke(
        main,
        ["build", str(traffic_checkpoints["gru"]), "--data", str(traffic_path), "--recipe",
         str(recipe), "-o", str(tmp_path / "x.edgepkg")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "recipe.toml: passes[0]: unknown key 'ratoi'" in result.output
    assert not (tmp_path / "x.edgepkg").exists()


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_example_recipes_parse(path):
    recipe = load_recipe(path)
    assert recipe.passes and recipe.build_configs()
    assert [p.name for p in recipe.make_passes()] == [name for name, _ in recipe.passes]


def test_every_registered_pass_imports_under_its_name():
    from edgecomp.passes import PASSES, PassError, get_pass

    assert {name: get_pass(name).name for name in PASSES} == {name: name for name in PASSES}
    with pytest.raises(PassError, match=r"unknown pass 'x'. Available: \['distill'"):
        get_pass("x")
