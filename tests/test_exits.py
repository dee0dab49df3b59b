"""Exit codes: one meaning each, documented in --help."""

from __future__ import annotations

from click.testing import CliRunner

from edgecomp import exits
from edgecomp.cli import main


def test_codes_are_distinct_and_documented():
    codes = [exits.OK, exits.UNEXPECTED, exits.USAGE, exits.BUDGET_NOT_MET, exits.REGRESSION]
    assert len(set(codes)) == len(codes)
    shown = CliRunner().invoke(main, ["--help"]).output
    for code in codes:
        assert f"{code} " in shown.split("Exit codes:")[1]


def test_input_errors_exit_2_and_unexpected_errors_exit_1(tmp_path, monkeypatch):
    # setup: a missing file is an input error; a failure inside a command is unexpected
    def broken():
        raise RuntimeError("boom")

    # execute
    missing = CliRunner().invoke(main, ["inspect", str(tmp_path / "none.edgepkg")])
    monkeypatch.setattr("edgecomp.targets.list_profiles", broken)
    crashed = CliRunner().invoke(main, ["targets"])
    # assert
    assert missing.exit_code == exits.USAGE, missing.output
    assert crashed.exit_code == exits.UNEXPECTED
    assert isinstance(crashed.exception, RuntimeError)
