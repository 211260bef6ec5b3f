"""The training loop: AdamW + warm-up/cosine, class-weighted loss, AMP on CUDA, early stopping
on validation ROC-AUC, an atomic checkpoint every epoch, exact --resume, and DDP under torchrun.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ..errors import TrainingError
from .config import TrainConfig  # noqa: F401 (re-exported: the loop's configuration)
from .dataset import LesionDataset

log = logging.getLogger("lesionlens")


# ---- distributed ---------------------------------------------------------------------------

@dataclass
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistEnv:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistEnv(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _barrier(env: DistEnv) -> None:
    if env.world > 1:
        torch.distributed.barrier()


def _broadcast(env: DistEnv, value):
    if env.world == 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


# ---- pieces of the loop --------------------------------------------------------------------

def resolve_device(name: str, env: DistEnv = DistEnv()) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError("--device cuda asked for, but no CUDA device is available")
        return torch.device("cuda", env.local_rank)
    if name != "cpu":
        raise TrainingError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device("cpu")


def learning_rate(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warm-up, then cosine decay to 1% of the base rate. A function of the global step
    alone, so a resumed run lands on exactly the same schedule."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def class_weights(labels: list[int], num_classes: int) -> torch.Tensor:
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA when supported (no loss scaling needed), else fp16; none on CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


class Stepper:
    """One optimisation step (forward, loss, backward, update). The benchmark calls the same
    object on ready tensors, so its comparison measures data loading and nothing else."""

    def __init__(self, model, optimizer, loss_fn, device, schedule: Callable[[int], float]):
        self.model, self.optimizer, self.loss_fn, self.device = model, optimizer, loss_fn, device
        self.schedule = schedule
        self.autocast, self.scaler = autocast_for(device)
        self.step_count = 0

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        lr = self.schedule(self.step_count)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        images = images.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            loss = self.loss_fn(self.model(images), labels)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.step_count += 1
        return float(loss.detach())


@torch.no_grad()
def predict_probs(model: nn.Module, loader: DataLoader, device: torch.device, progress: bool = False,
                  desc: str = "evaluating") -> tuple[np.ndarray, np.ndarray, float]:
    """(probabilities (N, K), labels (N,), mean cross-entropy) over a loader, model in eval."""
    from tqdm.auto import tqdm

    model.eval()
    autocast, _ = autocast_for(device)
    probs, labels, loss_sum = [], [], 0.0
    for images, y in tqdm(loader, desc=desc, disable=not progress, leave=False):
        with autocast():
            logits = model(images.to(device).contiguous(memory_format=torch.channels_last)).float()
        loss_sum += float(nn.functional.cross_entropy(logits, y.to(device), reduction="sum"))
        probs.append(torch.softmax(logits, 1).cpu().numpy())
        labels.append(y.numpy())
    n = sum(len(y) for y in labels)
    return np.concatenate(probs), np.concatenate(labels), loss_sum / max(1, n)


def default_workers(device: torch.device) -> int:
    cpus = os.cpu_count() or 1
    if device.type == "cpu" and cpus <= 2:
        return 0  # workers would only steal the cores the model computes on
    return min(8, cpus)


def make_loader(samples, spec, train: bool, config: TrainConfig, env: DistEnv, device: torch.device):
    workers = default_workers(device) if config.workers < 0 else config.workers
    dataset = LesionDataset(samples, spec, train=train, seed=config.seed, cache=workers == 0)
    sampler = DistributedSampler(dataset, env.world, env.rank, shuffle=True, seed=config.seed, drop_last=False) if train else None
    loader = DataLoader(
        dataset, batch_size=config.batch_size, sampler=sampler, shuffle=False, num_workers=workers,
        pin_memory=device.type == "cuda", drop_last=train and len(dataset) > config.batch_size * env.world,
        persistent_workers=False,
    )
    return loader, sampler
