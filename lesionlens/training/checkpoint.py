"""Atomic writes, safetensors weights with their sha256, and the resumable training state.

Nothing here unpickles: weights and optimizer tensors are safetensors, everything else JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temp file in the same folder, then rename over `path`, so a reader
    (or a run killed mid-write) never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the result is an ordinary file
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str)))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(model: torch.nn.Module, path: Path) -> str:
    """Save a state dict as safetensors (atomic); returns the file's sha256."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, str(tmp)))
    return sha256_file(path)


def load_weights(model: torch.nn.Module, path: Path) -> None:
    model.load_state_dict(load_file(str(path)))


def save_training_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scaler_state: dict, progress: dict) -> None:
    """Everything --resume needs: weights, optimizer moments (safetensors), and the progress
    (epoch, history, early-stopping counters; JSON). The JSON is written last and names the
    tensor file's hash, so a state is only trusted when both halves are complete."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim = optimizer.state_dict()
    for pid, state in optim["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{name}"] = value.detach().cpu().contiguous()
    for name, value in scaler_state.items():
        if torch.is_tensor(value):
            tensors[f"scaler.{name}"] = value.detach().cpu().contiguous()
    tensor_path = Path(folder) / "last.safetensors"
    atomic_write(tensor_path, lambda tmp: save_file(tensors, str(tmp)))
    meta = {
        "progress": progress,
        "param_groups": optim["param_groups"],
        "scaler": {k: v for k, v in scaler_state.items() if not torch.is_tensor(v)},
        "tensors_sha256": sha256_file(tensor_path),
    }
    write_json(Path(folder) / "last.json", meta)


def load_training_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Restore model and optimizer in place; returns (progress, scaler_state)."""
    folder = Path(folder)
    meta = json.loads((folder / "last.json").read_text())
    tensor_path = folder / "last.safetensors"
    if sha256_file(tensor_path) != meta["tensors_sha256"]:
        raise RuntimeError(f"{tensor_path}: does not match {folder / 'last.json'} (interrupted write?)")
    tensors = load_file(str(tensor_path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    scaler_state = dict(meta["scaler"])
    scaler_state.update({k[7:]: v for k, v in tensors.items() if k.startswith("scaler.")})
    return meta["progress"], scaler_state
