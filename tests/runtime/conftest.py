"""Fixtures: a toy artifact built without torch (onnx.helper model + hand-written manifest).

The toy's model bytes come from fixtures/toy.onnx (written by fixtures/make_fixtures.py from
``Toy.onnx_bytes``), so the runtime-only environments of ``make test`` (Python 3.10 and 3.13,
no onnx, no torch) run the same tests; test_fixtures checks the file still matches the toy.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the runtime's onnx engine needs onnxruntime")

# make test also runs these tests in runtime-only environments (Python 3.10 and 3.13: the runtime,
# its extras and pytest, no compiler). There a test that cross-checks with the compiler fails to
# import one of its packages: it is skipped with that reason instead (never in the main venv).
_RUNTIME_ONLY = importlib.util.find_spec("torch") is None
_COMPILER_ONLY = frozenset({"torch", "pandas", "pyarrow", "onnx", "click", "rich", "safetensors"})


_MISSING = re.compile(r"ModuleNotFoundError: No module named '([A-Za-z_]\w*)")


def _compiler_only(missing: str) -> str | None:
    """The skip reason when a runtime-only run misses a compiler package, else None."""
    if _RUNTIME_ONLY and missing.split(".")[0] in _COMPILER_ONLY:
        return f"needs {missing.split('.')[0]}, a compiler package: runs in the main environment"
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    outcome = yield
    error = outcome.excinfo[1] if outcome.excinfo else None
    if isinstance(error, ModuleNotFoundError) and (reason := _compiler_only(error.name or "")):
        outcome.force_exception(pytest.skip.Exception(reason, _use_item_location=True))


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    outcome = yield
    report = outcome.get_result()
    found = _MISSING.search(str(report.longrepr)) if report.failed else None
    if found and (reason := _compiler_only(found.group(1))):
        report.outcome = "skipped"
        report.longrepr = (str(collector.path), 0, f"Skipped: {reason}")


FIXTURES = Path(__file__).resolve().parent / "fixtures"
DELETE = "<delete>"  # make_artifact(manifest={"spec.scaler": DELETE}) removes the key


@dataclass(frozen=True)
class Toy:
    """A linear forecaster: raw [B, L, F] -> impute -> scale -> flatten @ W + b -> unscale."""

    input_len: int = 6
    horizon: int = 2
    features: tuple[str, ...] = ("a", "b", "c")
    targets: tuple[str, ...] = ("c", "a")
    mean: tuple[float, ...] = (10.0, -2.0, 100.0)
    std: tuple[float, ...] = (2.0, 0.5, 25.0)
    imputation: dict[str, Any] = field(
        default_factory=lambda: {
            "interpolate_limit": 2,
            "then": "ffill",
            "max_missing_fraction": 0.5,
        }
    )

    @property
    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(0)
        n_in = self.input_len * len(self.features)
        n_out = self.horizon * len(self.targets)
        w = (rng.standard_normal((n_in, n_out)) * 0.2).astype(np.float32)
        b = (rng.standard_normal(n_out) * 0.1).astype(np.float32)
        return w, b

    def onnx_bytes(self) -> bytes:
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        w, b = self.weights
        n_out = len(self.targets)
        shape_in = np.array([-1, w.shape[0]], dtype=np.int64)
        shape_out = np.array([-1, self.horizon, n_out], dtype=np.int64)
        nodes = [
            helper.make_node("Reshape", ["window", "shape_in"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["mm"]),
            helper.make_node("Add", ["mm", "b"], ["z"]),
            helper.make_node("Reshape", ["z", "shape_out"], ["forecast"]),
        ]
        graph = helper.make_graph(
            nodes,
            "toy",
            [helper.make_tensor_value_info("window", TensorProto.FLOAT, ["batch", *self.dims_in])],
            [
                helper.make_tensor_value_info(
                    "forecast", TensorProto.FLOAT, ["batch", *self.dims_out]
                )
            ],
            initializer=[
                numpy_helper.from_array(w, "w"),
                numpy_helper.from_array(b, "b"),
                numpy_helper.from_array(shape_in, "shape_in"),
                numpy_helper.from_array(shape_out, "shape_out"),
            ],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model.SerializeToString()

    @property
    def dims_in(self) -> list[int]:
        return [self.input_len, len(self.features)]

    @property
    def dims_out(self) -> list[int]:
        return [self.horizon, len(self.targets)]

    def manifest(self, model_bytes: bytes) -> dict[str, Any]:
        return {
            "format": "edgecomp-artifact",
            "format_version": 1,
            "created": "2025-01-01T00:00:00Z",
            "producer": {"edgecomp": "0.1.0", "onnx": "1.23.2"},
            "target": {"name": "x86-64-avx2", "backend": "onnx", "arch": "x86_64", "toolchain": {}},
            "precision": "fp32",
            "model_file": "model.onnx",
            "io": {
                "inputs": [
                    {"name": "window", "shape": ["batch", *self.dims_in], "dtype": "float32"}
                ],
                "outputs": [
                    {"name": "forecast", "shape": ["batch", *self.dims_out], "dtype": "float32"}
                ],
            },
            "spec": {
                "arch": "linear",
                "hparams": {},
                "input_len": self.input_len,
                "horizon": self.horizon,
                "features": list(self.features),
                "targets": list(self.targets),
                "scaler": {"kind": "standard", "mean": list(self.mean), "std": list(self.std)},
                "imputation": dict(self.imputation),
                "period_s": 900.0,
                "seasonal_period": None,
                "data": {},
            },
            "recipe": {"passes": [], "lowering": {}},
            "layers": [],
            "metrics": {},
            "files": [_file_entry("model.onnx", model_bytes)],
        }

    def reference(self, raw: np.ndarray) -> np.ndarray:
        """The toy's math in numpy on NaN-free raw windows [B, L, F] -> raw [B, H, F_out]."""
        w, b = self.weights
        mean, std = np.array(self.mean), np.array(self.std)
        scaled = ((np.asarray(raw, dtype=np.float64) - mean) / std).astype(np.float32)
        y = scaled.reshape(len(scaled), -1) @ w + b
        y = y.reshape(len(scaled), self.horizon, len(self.targets)).astype(np.float64)
        index = [self.features.index(name) for name in self.targets]
        return y * std[index] + mean[index]

    def window(self, batch: int | None = None, seed: int = 1) -> np.ndarray:
        """Raw NaN-free windows around the scaler's mean: [L, F], or [batch, L, F]."""
        rng = np.random.default_rng(seed)
        shape = (self.input_len, len(self.features))
        if batch is not None:
            shape = (batch, *shape)
        return np.array(self.mean) + rng.standard_normal(shape) * np.array(self.std)


def _file_entry(name: str, data: bytes) -> dict[str, Any]:
    return {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _set_path(obj: Any, path: str, value: Any) -> None:
    """Set (or with DELETE remove) a dotted path such as "spec.scaler.mean" or "files.0.size"."""
    *parents, last = path.split(".")
    for key in parents:
        obj = obj[int(key)] if isinstance(obj, list) else obj[key]
    key = int(last) if isinstance(obj, list) else last
    if isinstance(value, str) and value == DELETE:
        del obj[key]
    else:
        obj[key] = value


def _write_artifact(
    dest: Path,
    manifest: Any,
    files: dict[str, bytes],
    *,
    unpacked: bool = False,
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """Write manifest.json and files as a zip (or a folder when unpacked)."""
    manifest_bytes = json.dumps(manifest).encode()
    if unpacked:
        dest.mkdir(parents=True)
        (dest / "manifest.json").write_bytes(manifest_bytes)
        for name, data in files.items():
            (dest / name).write_bytes(data)
        return dest
    with zipfile.ZipFile(dest, "w", compression=compression) as archive:
        archive.writestr("manifest.json", manifest_bytes)
        for name, data in files.items():
            archive.writestr(name, data)
    return dest


@pytest.fixture(scope="session")
def pieces() -> Callable[[Any, Any], np.ndarray]:
    """``predict`` through the public pieces: scale_window, run_scaled, unscale_forecast."""

    def run(model: Any, window: Any) -> np.ndarray:
        x = np.asarray(window)
        batched = x.ndim == 3
        x = x if batched else x[None]
        y = model.unscale_forecast(model.run_scaled(model.scale_window(x)), copy=False)
        return y if batched else y[0]

    return run


@pytest.fixture(scope="session")
def set_path() -> Callable[[Any, str, Any], None]:
    """set_path(obj, "spec.scaler.mean", value); the value DELETE removes the key."""
    return _set_path


@pytest.fixture(scope="session")
def write_artifact() -> Callable[..., Path]:
    """write_artifact(dest, manifest, files, *, unpacked=False, compression=ZIP_DEFLATED)."""
    return _write_artifact


@pytest.fixture(scope="session")
def toy() -> Toy:
    return Toy()


@pytest.fixture(scope="session")
def toy_model_bytes(toy: Toy) -> bytes:
    return (FIXTURES / "toy.onnx").read_bytes()


@pytest.fixture
def valid_manifest(toy: Toy, toy_model_bytes: bytes) -> dict[str, Any]:
    return toy.manifest(toy_model_bytes)


GATES = {"lstm": 4, "gru": 3}  # gate blocks per recurrent cell


def rnn_weights(cell: str, n_features: int, hidden: Any, outputs: int, seed: int = 0) -> tuple:
    """Random stacked LSTM / GRU weights as ``native.pack`` takes them (PyTorch's init bounds),
    and a head of ``outputs`` rows: (layers, head weight, head bias); the same for one seed."""
    rng = np.random.default_rng(seed)
    layers, width = [], n_features
    for size in hidden:
        rows, bound = GATES[cell] * size, 1 / np.sqrt(size)
        layers.append(
            {
                "w_ih": rng.uniform(-bound, bound, (rows, width)),
                "w_hh": rng.uniform(-bound, bound, (rows, size)),
                "b_ih": rng.uniform(-bound, bound, rows),
                "b_hh": rng.uniform(-bound, bound, rows),
            }
        )
        width = size
    return layers, rng.normal(0, 0.3, (outputs, width)), rng.normal(0, 0.1, outputs)


def native_artifact(
    make: Callable[..., Path], toy: Toy, data: bytes, *, equivalents: Any = ("onnx",)
) -> Path:
    """The toy artifact plus ``data`` as ``model.native``, which its manifest names for the
    native engine (ONNX Runtime on the toy ONNX file recorded as the equivalents)."""
    onnx_entry = toy.manifest((FIXTURES / "toy.onnx").read_bytes())["files"][0]
    entry = {"name": "model.native", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    lowering = {
        "lowering": "native",
        "engine": "native",
        "engine_files": {"native": "model.native"},
        "equivalent_engines": list(equivalents),
    }
    return make(
        manifest={"recipe.lowering": lowering, "files": [onnx_entry, entry]},
        files={"model.native": data},
    )


@pytest.fixture
def make_artifact(tmp_path: Path, toy: Toy, toy_model_bytes: bytes) -> Callable[..., Path]:
    """make_artifact(**overrides) -> path of a toy artifact, tampered as asked.

    Overrides: ``manifest`` {dotted path: value or DELETE}, applied after checksums are computed;
    ``files`` {name: bytes} written after checksums (to corrupt or add files); ``unpacked``;
    ``compression``; ``name`` of the artifact file or folder.
    """
    counter = iter(range(10_000))

    def make(
        *,
        manifest: dict[str, Any] | None = None,
        files: dict[str, bytes] | None = None,
        unpacked: bool = False,
        compression: int = zipfile.ZIP_DEFLATED,
        name: str | None = None,
    ) -> Path:
        data = toy.manifest(toy_model_bytes)
        for path, value in (manifest or {}).items():
            _set_path(data, path, copy.deepcopy(value))
        contents = {"model.onnx": toy_model_bytes, **(files or {})}
        dest = tmp_path / (name or f"toy{next(counter)}{'' if unpacked else '.edgepkg'}")
        return _write_artifact(dest, data, contents, unpacked=unpacked, compression=compression)

    return make


def _run_fresh(script: str, *args: str) -> Any:
    """Run ``script`` in a fresh interpreter (nothing this process imported leaks in) and return
    the JSON its last stdout line prints; a non-zero exit fails the test with its stderr."""
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def run_fresh() -> Callable[..., Any]:
    """``run_fresh(script, *args)``: the JSON a script prints from a fresh Python process."""
    return _run_fresh
