"""Checkpoints: a folder holding model.safetensors, spec.json and train.json.

Nothing here unpickles: weights are safetensors, or a torch state_dict read with
``torch.load(weights_only=True)``; the rest is JSON. Every file is written atomically.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgecomp._io import atomic_write, atomic_write_text
from edgecomp.models import ModelError, build_model
from edgecomp.spec import Model, ModelSpec, SpecError
from edgecomp.train import TrainConfig

__all__ = [
    "SPEC_FILE",
    "TRAIN_FILE",
    "WEIGHTS_FILE",
    "CheckpointError",
    "apply_state_dict",
    "load_checkpoint",
    "load_state_dict_file",
    "read_train_info",
    "save_checkpoint",
]

WEIGHTS_FILE = "model.safetensors"
SPEC_FILE = "spec.json"
TRAIN_FILE = "train.json"


class CheckpointError(ValueError):
    """A checkpoint or weights file cannot be read; the message names the file (and key)."""


def save_checkpoint(
    model: Model,
    out_dir: str | Path,
    *,
    history: list[dict] | None = None,
    train_config: TrainConfig | dict | None = None,
) -> Path:
    """Write ``model`` to ``out_dir``: model.safetensors, spec.json and train.json.

    Args:
        model: Module + spec; the module's state_dict is saved (as contiguous CPU tensors).
        out_dir: Folder to write (created if needed); existing checkpoint files are replaced.
        history: Per-epoch training history, stored in train.json.
        train_config: The training config, stored in train.json.

    Returns:
        ``out_dir`` as a Path.
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in model.module.state_dict().items()}
    if isinstance(train_config, TrainConfig):
        train_config = train_config.to_dict()
    atomic_write(out_dir / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp)))
    atomic_write_text(out_dir / SPEC_FILE, json.dumps(model.spec.to_dict(), indent=2))
    train_info = {"history": history or [], "config": train_config}
    atomic_write_text(out_dir / TRAIN_FILE, json.dumps(train_info, indent=2))
    return out_dir


def load_checkpoint(path: str | Path) -> Model:
    """Rebuild a registered-architecture model from a checkpoint folder (or its spec.json).

    Raises:
        CheckpointError: A missing file, bad JSON or spec, an architecture that cannot be built,
            or a weight key that is missing, unexpected or of the wrong shape (named).
    """
    path = Path(path)
    folder = path.parent if path.name == SPEC_FILE else path
    spec_path = folder / SPEC_FILE
    if not spec_path.is_file():
        raise CheckpointError(f"{spec_path}: no such file (is {folder} a checkpoint folder?)")
    try:
        spec = ModelSpec.load(spec_path)
        module = build_model(spec)
    except (SpecError, ModelError) as exc:
        raise CheckpointError(f"{spec_path}: {exc}") from None
    apply_state_dict(
        module, load_state_dict_file(folder / WEIGHTS_FILE), source=str(folder / WEIGHTS_FILE)
    )
    module.eval()
    return Model(module=module, spec=spec, source=str(folder))


def read_train_info(path: str | Path) -> dict[str, Any]:
    """The train.json of a checkpoint folder: ``{"history": [...], "config": {...} or None}``."""
    train_path = Path(path) / TRAIN_FILE
    try:
        return json.loads(train_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{train_path}: cannot read JSON: {exc}") from None


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a flat ``{name: tensor}`` from .safetensors, or from a torch file (.pt/.pth, ...).

    Torch files are read with ``torch.load(weights_only=True)`` on CPU: nothing is unpickled
    beyond tensors and plain containers.

    Raises:
        CheckpointError: Missing or unreadable file, a file holding other Python objects, or
            a content that is not a flat dict of tensors (the message names the file and key).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    state = _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch(path)
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path}: expected a dict of name -> tensor (a state_dict), got {type(state).__name__}"
        )
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path}: key {key!r} holds {type(value).__name__}, not a tensor; "
                f"save model.state_dict() itself"
            )
    return state


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file: {exc}") from None


def _read_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused by torch.load(weights_only=True) ({_unpickler_reason(exc)}): only "
            f"tensors and plain containers are read, never other Python objects; "
            f"save model.state_dict() instead"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable torch file: {exc}") from None


def _unpickler_reason(exc: Exception) -> str:
    """The one line of torch's weights-only error that says what it refused."""
    text = str(exc)
    _, _, tail = text.partition("WeightsUnpickler error:")
    reason = tail.strip().split("\n")[0].strip() if tail else ""
    return reason or text.strip().split("\n")[0]


def apply_state_dict(module: nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Load ``state`` into ``module``, strictly: every key present, none extra, shapes equal.

    Raises:
        CheckpointError: Names ``source`` and the first missing, unexpected or mis-shaped key.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise CheckpointError(f"{source}: missing weight '{missing[0]}' ({len(missing)} missing)")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise CheckpointError(
            f"{source}: unexpected weight '{unexpected[0]}' ({len(unexpected)} unexpected)"
        )
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{source}: weight '{key}' has shape {list(state[key].shape)}, "
                f"the model expects {list(value.shape)}"
            )
    module.load_state_dict(state, strict=True)
