"""Front end: turn what a user has into a Model (module + ModelSpec).

Accepted sources:
    * an edgecomp checkpoint folder (spec.json + model.safetensors), or its spec.json;
    * ``path/to/module.py:factory`` plus a weights file (safetensors, or a state_dict read with
      ``torch.load(weights_only=True)``);
    * a TorchScript file (.pt / .ts archive with a ``code/`` folder);
    * an ONNX file.
The last three need a ModelSpec: a JSON file, or one derived from the data and flags by the caller.
"""

from __future__ import annotations

import importlib.util
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecomp.spec import Model, ModelSpec

__all__ = ["FrontendError", "OnnxSource", "load_model", "reference_predict", "source_kind"]


class FrontendError(ValueError):
    """The model source cannot be read; the message names the file or symbol."""


@dataclass
class OnnxSource:
    """An ONNX model given as the source: lowered as is, its reference outputs come from ORT."""

    path: Path

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import onnxruntime as ort

        if not hasattr(self, "_session"):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            self._session = ort.InferenceSession(
                str(self.path), opts, providers=["CPUExecutionProvider"]
            )
        name = self._session.get_inputs()[0].name
        return self._session.run(None, {name: x.astype(np.float32)})[0]


def source_kind(source: str | Path) -> str:
    """Classify a source: "checkpoint", "factory", "torchscript" or "onnx"."""
    text = str(source)
    path = Path(text)
    if path.is_dir() or path.name == "spec.json":
        return "checkpoint"
    if ".py:" in text:
        return "factory"
    if not path.exists():
        raise FrontendError(f"{text}: no such file or folder")
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if any("/code/" in n or n.startswith("code/") for n in zf.namelist()):
                return "torchscript"
    raise FrontendError(
        f"{text}: not a checkpoint folder, module.py:factory, TorchScript archive or .onnx file "
        "(a bare state_dict needs module.py:factory with --weights)"
    )


def load_model(
    source: str | Path, *, weights: str | Path | None = None, spec: ModelSpec | None = None
) -> Model:
    """Ingest ``source`` as a Model.

    Args:
        source: See the module docstring.
        weights: Weights file for a ``module.py:factory`` source.
        spec: ModelSpec for non-checkpoint sources (ignored for checkpoints, which carry their own).

    Raises:
        FrontendError: Unreadable source, missing spec or weights, shape mismatch.
    """
    kind = source_kind(source)
    if kind == "checkpoint":
        from edgecomp.checkpoint import load_checkpoint

        return load_checkpoint(source)
    if spec is None:
        raise FrontendError(
            f"{source}: a {kind} source needs a ModelSpec (--spec JSON, or --data "
            "with --input-len and --horizon)"
        )
    if kind == "onnx":
        module = OnnxSource(Path(source))
    elif kind == "torchscript":
        module = _load_torchscript(Path(source))
    else:
        module = _load_factory(str(source), weights)
    model = Model(module=module, spec=spec, source=str(source))
    _check_shapes(model)
    return model


def reference_predict(model: Model, x: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
    """Outputs of the source model (torch eager, TorchScript or ORT) on scaled windows."""
    if isinstance(model.module, OnnxSource):
        return np.concatenate(
            [model.module(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        )
    from edgecomp.train import predict

    return predict(model.module, x, batch_size=batch_size)


def _load_torchscript(path: Path):
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad archive
        raise FrontendError(f"{path}: cannot load as TorchScript: {exc}") from None
    return module.eval()


def _load_factory(source: str, weights: str | Path | None):
    file_part, _, factory_name = source.rpartition(":")
    path = Path(file_part)
    if not path.is_file():
        raise FrontendError(f"{path}: module file not found")
    if weights is None:
        raise FrontendError(f"{source}: a module.py:factory source needs --weights")
    mod_spec = importlib.util.spec_from_file_location(f"edgecomp_user_{path.stem}", path)
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[mod_spec.name] = module
    mod_spec.loader.exec_module(module)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise FrontendError(f"{path}: no callable '{factory_name}'")
    net = factory()
    _load_weights(net, Path(weights))
    return net.eval()


def _load_weights(net, path: Path) -> None:
    from edgecomp.checkpoint import apply_state_dict, load_state_dict_file

    apply_state_dict(net, load_state_dict_file(path), source=str(path))


def _check_shapes(model: Model) -> None:
    spec = model.spec
    x = np.zeros((2, spec.input_len, spec.n_features), dtype=np.float32)
    try:
        y = reference_predict(model, x)
    except Exception as exc:  # noqa: BLE001 - any failure here means the spec does not fit
        raise FrontendError(
            f"{model.source}: running the model on [2, {spec.input_len}, "
            f"{spec.n_features}] failed: {exc}"
        ) from None
    expected = (2, spec.horizon, len(spec.targets))
    if tuple(y.shape) != expected:
        raise FrontendError(
            f"{model.source}: output shape {tuple(y.shape)} does not match the "
            f"spec's [batch, horizon, targets] = {list(expected)}"
        )
