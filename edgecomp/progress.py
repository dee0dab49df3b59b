"""Progress bars on stderr and quiet third-party logs, for the `edgecomp` commands.

Bars show only on a terminal, and never with ``--json`` or ``--quiet``. Third-party logs (absl,
TensorFlow and oneDNN notes, torchao's failed ``.so`` loads, deprecation warnings of the
converters) are silenced unless ``--verbose``: ``configure`` sets the environment variables the
C++ libraries read at load time, so it must run before they are imported (the commands import
them inside their bodies). Imports only the standard library at top level; rich loads with a bar.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["STATE", "bar", "configure", "enabled", "json_mode", "log_line", "native_quiet"]

STATE: dict[str, bool] = {"quiet": False, "verbose": False, "json": False}

#: Read by TensorFlow / LiteRT / glog-based C++ code when it loads: errors only.
QUIET_ENV: dict[str, str] = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "GLOG_minloglevel": "3",
    "ABSL_MIN_LOG_LEVEL": "3",
    # TensorFlow (loaded by the TFLite converter) prints its oneDNN note through absl before
    # any level applies; without oneDNN's custom ops there is no note. The artifact's parity
    # is verified either way.
    "TF_ENABLE_ONEDNN_OPTS": "0",
}
#: Lines native code writes straight to file descriptor 2, at no log level the variables above
#: reach (LiteRT's first interpreter in a process); ``native_quiet`` drops them.
NATIVE_NOISE = re.compile(r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.")
#: Python loggers whose warnings are noise at a build (they stay, with --verbose).
NOISY_LOGGERS = (
    "absl",
    "tensorflow",
    "jax",
    "torchao",
    "torch.utils._pytree",
    "torch._dynamo",
    "torch._export",
    "torch.export",
    "torch.onnx",
    "onnxscript",
    "litert_torch",
    "ai_edge_torch",
    "ai_edge_quantizer",
    "ai_edge_litert",
    "tensorrt",
    "polygraphy",
    "modelopt",
    "flwr",
)
#: Packages whose records on the root logger are noise at a build (errors stay).
_ROOT_NOISE = ("onnxruntime", "onnx", "tensorflow", "ai_edge_quantizer", "litert_torch", "nncf")
#: Modules whose DeprecationWarning/FutureWarning/UserWarning are hidden.
NOISY_MODULES = (
    r"(tensorflow|tf_keras|keras|jax|absl|torchao|torch|onnxscript|onnx|litert_torch|"
    r"ai_edge_\w+|tensorrt\w*|polygraphy|modelopt|flwr|ray|google\.protobuf)(\..*)?"
)


def _errors_only(record: Any) -> bool:
    return record.levelno >= 40  # logging.ERROR


def _toolchain_errors_only(record: Any) -> bool:
    """For the root logger: a toolchain's ``logging.warning(...)`` (onnxruntime's quantizer
    logs "Please consider to run pre-processing" that way) only at error level."""
    path = record.pathname.replace("\\", "/")
    return record.levelno >= 40 or not any(f"/{name}/" in path for name in _ROOT_NOISE)


def _no_traceback(record: Any) -> bool:
    """Optuna's "Trial n failed ... because of the following error: ..." in one line: the
    error is in the message (and the study's trial record), its traceback is not for users."""
    record.exc_info, record.exc_text = None, None
    return True


def configure(*, quiet: bool | None = None, verbose: bool | None = None) -> None:
    """Set ``--quiet``/``--verbose`` (None: keep); without verbose, silence third-party logs."""
    if quiet is not None:
        STATE["quiet"] = quiet
    if verbose is not None:
        STATE["verbose"] = verbose
    _SAID.clear()
    if not STATE["verbose"]:
        _silence()


def _silence() -> None:
    import logging  # here: `edgecomp --help` never runs this
    import warnings

    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if _errors_only not in logger.filters:
            logger.addFilter(_errors_only)  # a filter: libraries reset levels, not filters
    if _toolchain_errors_only not in logging.getLogger().filters:
        logging.getLogger().addFilter(_toolchain_errors_only)
    trials = logging.getLogger("optuna.study._optimize")  # where optuna logs a failed trial
    if _no_traceback not in trials.filters:
        trials.addFilter(_no_traceback)
    for category in (DeprecationWarning, FutureWarning, UserWarning, RuntimeWarning):
        warnings.filterwarnings("ignore", category=category, module=NOISY_MODULES)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    if warnings.showwarning is not _one_line:
        warnings.showwarning = _one_line


_SAID: set[str] = set()


@contextlib.contextmanager
def native_quiet() -> Iterator[None]:
    """Unless ``--verbose``: hold what is written to file descriptor 2 during the block, then
    write it back without the ``NATIVE_NOISE`` lines (errors and warnings stay, after the block).

    For the compiler process only, around calls that create a runtime engine (LiteRT prints
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." there); nothing outside changes.
    """
    if STATE["verbose"]:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines = sink.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not NATIVE_NOISE.fullmatch(line.strip()))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


def _one_line(message: Any, category: type, filename: str, lineno: int, *_: Any) -> None:
    """An edgecomp warning as one line on stderr, without its source line, said once per run
    (the same note about another file of the same build is not repeated)."""
    text = str(message).splitlines()[0] if str(message) else category.__name__
    head, sep, rest = text.partition(": ")
    key = rest if sep and " " not in head else text  # "model.onnx: TensorRT is not used..."
    if key in _SAID:
        return
    _SAID.add(key)
    sys.stderr.write(f"warning: {text}\n")


@contextlib.contextmanager
def json_mode() -> Iterator[None]:
    """No progress bar while a command writes JSON."""
    before = STATE["json"]
    STATE["json"] = True
    try:
        yield
    finally:
        STATE["json"] = before


def enabled() -> bool:
    """Bars show on a terminal (stderr), not with --json or --quiet."""
    if STATE["quiet"] or STATE["json"]:
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def log_line(console: Any) -> Callable[[str], None]:
    """A ``log(line)`` callable printing on ``console``, silent with --quiet."""

    def log(line: str) -> None:
        if not STATE["quiet"]:
            console.print(line, highlight=False)

    return log


class _Bar:
    """``advance(description)``: one step done, the next one named."""

    def __init__(self, progress: Any, task: Any) -> None:
        self._progress, self._task = progress, task

    def __call__(self, description: str | None = None, steps: float = 1) -> None:
        if self._progress is None:
            return
        fields = {} if description is None else {"description": description}
        self._progress.update(self._task, advance=steps, **fields)

    def describe(self, description: str) -> None:
        """Rename the current step without advancing."""
        if self._progress is not None:
            self._progress.update(self._task, description=description)


@contextlib.contextmanager
def bar(description: str, total: float | None = None) -> Iterator[_Bar]:
    """A transient progress bar on stderr (a spinner when ``total`` is None); a no-op bar
    when bars are off (see ``enabled``)."""
    if not enabled():
        yield _Bar(None, None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn()]
    if total is not None:
        columns.append(MofNCompleteColumn())
    progress = Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True), transient=True)
    with progress:
        yield _Bar(progress, progress.add_task(description, total=total))
