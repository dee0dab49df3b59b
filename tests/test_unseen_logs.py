"""Toolchain notes logged on the root logger stay hidden without --verbose: onnxruntime's
quantizer calls ``logging.warning("Please consider to run pre-processing ...")``, which every
x86 int8 build of an LSTM or GRU printed, -q or not."""

from __future__ import annotations

import logging

import pytest

from edgecomp import progress

SITE = "/venv/lib/python3.11/site-packages"


def _log_from(path: str, level: str, text: str) -> None:
    """``logging.<level>(text)`` as code in the file ``path`` would call it."""
    exec(compile(f"import logging\nlogging.{level}({text!r})", path, "exec"), {})


@pytest.fixture
def quiet():
    before = list(logging.getLogger().filters)
    progress.configure(verbose=False)
    yield
    logging.getLogger().filters[:] = before


@pytest.mark.parametrize(
    ("path", "level", "shown"),
    [
        (f"{SITE}/onnxruntime/quantization/quantize.py", "warning", False),
        (f"{SITE}/onnxruntime/quantization/quantize.py", "info", False),
        (f"{SITE}/onnxruntime/quantization/quantize.py", "error", True),
        (f"{SITE}/tensorflow/lite/python/lite.py", "warning", False),
        ("/work/project/mycode.py", "warning", True),
        ("/work/edgecomp/pipeline.py", "warning", True),
    ],
)
def test_root_logger_records_of_toolchains_are_errors_only(quiet, caplog, path, level, shown):
    # setup
    caplog.set_level(logging.INFO)
    # execute
    _log_from(path, level, "Please consider to run pre-processing before quantization.")
    # assert
    assert bool(caplog.records) is shown


def test_a_failed_tune_trial_is_one_line_without_its_traceback(quiet):
    import optuna

    # setup: a handler of our own on optuna's logger (it does not propagate to the root)
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(logging.Formatter().format(record))
    logging.getLogger("optuna").addHandler(handler)

    def objective(trial):
        trial.suggest_categorical("lowering", ["hoisted"])
        raise ValueError("onnx: lowering 'hoisted' does not apply to a TCN")

    # execute
    try:
        study = optuna.create_study()
        study.optimize(objective, n_trials=1, catch=(ValueError,))
    finally:
        logging.getLogger("optuna").removeHandler(handler)
    # assert: the reason is said, no traceback is printed
    failed = [line for line in lines if "failed with parameters" in line]
    assert failed and "does not apply to a TCN" in failed[0]
    assert not any("Traceback" in line for line in lines)
