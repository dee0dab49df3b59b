"""The staged pipeline: the stage list, the runner, and a stage added in one line."""

from __future__ import annotations

import numpy as np
import pytest

from edgecomp.config import BuildConfig, BuildError
from edgecomp.pipeline import STAGES, BuildContext, Stage, run_stages, with_stage

NULL = BuildConfig(target="null-reference", precision="fp32")


@pytest.fixture(scope="module")
def tcn(traffic_checkpoints, traffic_path):
    from edgecomp.checkpoint import load_checkpoint
    from edgecomp.workflow import dataset_for

    model = load_checkpoint(traffic_checkpoints["tcn"])
    return model, dataset_for(model.spec, traffic_path)


def test_the_build_is_an_explicit_list_of_stages():
    names = [stage.name for stage in STAGES]
    assert names[:4] == ["resolve", "passes", "lower", "verify"]
    assert names[-2:] == ["stream", "package"]


def test_with_stage_inserts_after_the_named_stage_and_refuses_an_unknown_one():
    stage = Stage("audit", lambda ctx: None)
    names = [s.name for s in with_stage(STAGES, after="verify", stage=stage)]
    assert names[names.index("verify") + 1] == "audit" and len(names) == len(STAGES) + 1
    with pytest.raises(BuildError, match=r"unknown build stage 'verfy'\. Stages: \['resolve'"):
        with_stage(STAGES, after="verfy", stage=stage)


def test_a_stage_after_verify_sees_both_forecasts_on_val_and_test(tmp_path, tcn):
    # setup: one line adds the stage
    seen = {}
    stages = with_stage(
        STAGES, after="verify", stage=Stage("look", lambda ctx: seen.update(ctx.forecasts))
    )
    ctx = BuildContext(*tcn, NULL, out=tmp_path / "a.edgepkg")
    # execute
    run_stages(ctx, stages)
    # assert
    assert ctx.done == [s.name for s in stages] and ctx.path.is_file()
    dataset = tcn[1]
    for split in ("val", "test"):
        pair = seen[split]
        assert pair.reference.shape == pair.artifact.shape == dataset.split(split).y.shape
        np.testing.assert_allclose(
            pair.artifact, pair.reference, atol=1e-5
        )  # null: the torch weights
    assert ctx.manifest["metrics"]["split"] == "test"


def test_run_stages_stops_at_until_and_writes_nothing(tmp_path, tcn):
    ctx = run_stages(BuildContext(*tcn, NULL, out=tmp_path / "a.edgepkg"), until="verify")
    assert ctx.done == ["resolve", "passes", "lower", "verify"]
    assert ctx.files and "metrics" in ctx.manifest and not any(tmp_path.iterdir())
    with pytest.raises(BuildError, match="unknown build stage 'gat'"):
        run_stages(BuildContext(*tcn, NULL), until="gat")
