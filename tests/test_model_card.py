"""MODEL_CARD.md in every artifact: data, splits, per-step error vs baselines, limits."""

from __future__ import annotations

import shutil
import zipfile

import pytest

from edgecomp.report.model_card import CARD_NAME, error_rows


@pytest.fixture(scope="module")
def built(tmp_path_factory, traffic_tcn):
    """An int8 x86 artifact built with an error budget (the gate stage runs)."""
    from edgecomp.budget import Budget
    from edgecomp.config import BuildConfig
    from edgecomp.ladder import build_within_budget
    from edgecomp.targets import get_target

    if not get_target("onnx").is_available():
        pytest.skip(get_target("onnx").missing_reason())
    out = tmp_path_factory.mktemp("card") / "tcn.edgepkg"
    config = BuildConfig(target="x86-64-avx2", precision="int8")
    result = build_within_budget(*traffic_tcn, config, out, budget=Budget(max_increase=0.5))
    with zipfile.ZipFile(result.path) as zf:
        card = zf.read(CARD_NAME).decode()
    return result, card


def _table(card: str, heading: str) -> list[list[str]]:
    lines = card.split(heading, 1)[1].split("\n## ", 1)[0].splitlines()
    rows = [line for line in lines if line.startswith("| ")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows]


def test_card_is_listed_and_checksummed_like_the_model(built):
    result, card = built
    entry = next(e for e in result.manifest["files"] if e["name"] == CARD_NAME)
    assert entry["size"] == len(card.encode())
    assert card.startswith("# Model card: tcn forecaster, x86-64-avx2 (int8)")


def test_per_step_rows_equal_the_manifest_test_metrics(built):
    # setup
    result, card = built
    metrics = result.manifest["metrics"]
    header, rows = error_rows(metrics)
    table = _table(card, "## Error per horizon step (test split)")
    # assert
    assert metrics["split"] == "test"
    assert table[0] == header and len(table) == 1 + result.manifest["spec"]["horizon"]
    assert table[1:] == rows
    for h, row in enumerate(table[1:]):
        assert float(row[1]) == pytest.approx(metrics["reference"]["mae"][h], rel=1e-5)
        assert float(row[2]) == pytest.approx(metrics["artifact"]["mae"][h], rel=1e-5)
        assert float(row[3]) == pytest.approx(metrics["artifact"]["rmse"][h], rel=1e-5)
        baseline = float(row[header.index("last_value MAE")])
        assert baseline == pytest.approx(metrics["baselines"]["last_value"]["mae"][h], rel=1e-5)
        assert int(row[-1]) == metrics["artifact"]["scored"][h]
    assert f"{metrics['artifact']['n_scored']:,} scored" in card


def test_data_and_splits_describe_the_dataset(built, traffic_tcn):
    # setup
    _, card = built
    _, dataset = traffic_tcn
    splits = _table(card, "## Splits (by time)")[1:]
    # assert
    assert f"`{dataset.source['file']}`" in card and f"`{dataset.source['sha256']}`" in card
    assert f"rows: {len(dataset.raw):,} on a regular grid, one every 15 min" in card
    assert [row[0] for row in splits] == ["train", "val", "test"]
    for row in splits:
        start, end = dataset.bounds[row[0]]
        assert row[1] == f"{start}–{end}"
        assert row[2] == str(dataset.raw.index[start]) and row[3] == str(dataset.raw.index[end - 1])
        assert row[4] == f"{len(dataset.split(row[0])):,}"


def test_compression_and_limits(built):
    # setup
    result, card = built
    manifest = result.manifest
    model_size = next(e["size"] for e in manifest["files"] if e["name"] == manifest["model_file"])
    # assert
    methods = {layer["method"] for layer in manifest["layers"]}
    assert methods == {"static-qdq"}  # a TCN: static Q/DQ on every Conv and the Gemm
    assert f"- precision: int8; layers: {len(manifest['layers'])} int8 static-qdq" in card
    assert "- quantization: onnxruntime.quantization, steps quant_pre_process -> " in card
    assert f"model file {model_size:,} B" in card
    assert "- accuracy ladder: met by 'plain'" in card
    assert manifest["budget"]["checked"] and manifest["budget"]["gate"]["passed"]
    assert "met on the test split" in card
    assert "- input: the last 16 steps (4 h) of every feature" in card
    assert "output: the next 4 steps (1 h)" in card
    assert "more than 50% of its values" in card


def test_the_runtime_verifies_the_card(built, tmp_path):
    from edgecomp_runtime import load
    from edgecomp_runtime.errors import ChecksumError

    # setup: the artifact loads; a folder copy whose card was edited does not
    result, card = built
    load(result.path)
    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(result.path) as zf:
        zf.extractall(folder)
    load(folder)
    (folder / CARD_NAME).write_text(card.replace("int8", "fp32"))
    # execute / assert
    with pytest.raises(ChecksumError, match=CARD_NAME):
        load(folder)
    shutil.rmtree(folder)
