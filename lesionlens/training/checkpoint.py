"""Safetensors weights with their sha256, and the resumable training state.

Nothing here unpickles: weights and optimizer tensors are safetensors, everything else JSON.

The training state is a pair (tensors, manifest) committed atomically: the tensors go to a new
file named by its own hash, `state-<sha>.safetensors`; then `last.json`, which names that file
and its hash, replaces the previous manifest in one rename; only then are older tensor files
deleted. A process killed at any moment leaves a manifest whose tensor file is complete, so
`--resume` always works (the previous epoch at worst).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Type

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .._io import atomic_write, read_json, remove_stale_temp_files, sha256_file, write_json
from ..errors import LesionlensError, RunError, TrainingError, display_path

MANIFEST = "last.json"


def read_safetensors(path: Path, error: Type[LesionlensError] = RunError) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors, or `error` naming the file and the reason (missing,
    truncated, not a safetensors file)."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{display_path(path)}: weights file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise error(f"{display_path(path)}: not a readable safetensors file (truncated or foreign? {exc})") from None


def save_weights(model: torch.nn.Module, path: Path) -> str:
    """Save a state dict as safetensors (atomic); returns the file's sha256."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, str(tmp)))
    return sha256_file(path)


def load_weights(model: torch.nn.Module, path: Path, arch: str = "model") -> None:
    """Load weights into `model`, with one line per problem instead of hundreds of
    size-mismatch lines: which tensors are missing, unexpected or of another shape."""
    state = read_safetensors(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", mismatched)):
            if keys:
                parts.append(f"{len(keys)} tensor(s) {label} (e.g. {', '.join(keys[:3])})")
        raise RunError(f"{display_path(path)}: these weights do not fit a {arch}: {'; '.join(parts)}")
    model.load_state_dict(state)


def save_training_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        progress: dict, scaler: Optional[dict] = None) -> None:
    """Everything --resume needs: weights and optimizer moments (safetensors), progress (epoch,
    history, early-stopping counters) and the fp16 loss scaler's state (JSON)."""
    folder = Path(folder)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim = optimizer.state_dict()
    for pid, state in optim["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{name}"] = value.detach().cpu().contiguous()
    staging = folder / "state.staging.safetensors"
    atomic_write(staging, lambda tmp: save_file(tensors, str(tmp)))
    sha = sha256_file(staging)
    name = f"state-{sha[:16]}.safetensors"
    staging.replace(folder / name)
    write_json(folder / MANIFEST, {"progress": progress, "param_groups": optim["param_groups"],
                                   "scaler": scaler, "tensors_file": name, "tensors_sha256": sha})
    # committed: older tensor files and leftovers of killed writes can go
    for old in folder.glob("state-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    remove_stale_temp_files(folder)


def read_manifest(folder: Path) -> dict:
    return read_json(Path(folder) / MANIFEST, TrainingError, "training state")


def load_training_state(folder: Path, model: torch.nn.Module,
                        optimizer: torch.optim.Optimizer) -> tuple[dict, Optional[dict]]:
    """Restore model and optimizer in place; returns (progress, loss-scaler state or None)."""
    folder = Path(folder)
    meta = read_manifest(folder)
    tensor_path = folder / meta.get("tensors_file", "last.safetensors")
    if not tensor_path.is_file() or sha256_file(tensor_path) != meta["tensors_sha256"]:
        raise TrainingError(f"{display_path(tensor_path)}: missing or not the file {MANIFEST} names; "
                            "the training state cannot be resumed")
    tensors = read_safetensors(tensor_path, TrainingError)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    remove_stale_temp_files(folder)
    return meta["progress"], meta.get("scaler")
