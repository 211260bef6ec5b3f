"""Fine-tuning a parent model on its own training split, with the artifact's link to the label
cut: counterfactual edits (the artifact pasted onto images that lack it, removed from those that
carry it, each with probability 1/2, so it appears equally often in every class), the
normalised frame of the spec, and/or an extra loss term (RR-ClArC)."""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..audit import counterfactual
from ..data.preprocess import PreprocessSpec, decode_for, normalize, resize_to_spec
from ..training.augment import augment
from .artifacts import ArtifactSet

CACHE_SCALE = 1.15  # decoded images kept at this multiple of the model size (random crops need room)


class RevisionDataset(Dataset):
    """(image tensor, label, carries the artifact after the edit) per training sample."""

    def __init__(self, samples, spec: PreprocessSpec, artifact: ArtifactSet, edit: bool, seed: int = 0):
        self.samples, self.spec, self.artifact, self.edit, self.seed = samples, spec, artifact, edit, seed
        self.epoch = 0
        self.cache_spec = PreprocessSpec(size=int(round(spec.size * CACHE_SCALE)))
        self.pixels: dict[int, tuple] = {}
        self.donors: list[int] = []
        if edit:
            # every carrier with a region can donate: decoding them once, up front
            self.donors = [i for i in np.nonzero(artifact.carries)[0] if self._item(int(i))[1] is not None]
            if not self.donors:
                raise ValueError("no training image carrying the artifact has a region to paste from")

    def _item(self, index: int):
        if index not in self.pixels:
            rgb = resize_to_spec(decode_for(self.samples[index].path, self.cache_spec), self.cache_spec)
            self.pixels[index] = (rgb, self.artifact.region(index, rgb))
        return self.pixels[index]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        rgb, region = self._item(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        carries = bool(self.artifact.carries[index])
        if self.edit:
            if rng.random() < 0.5:  # this epoch, the image shows the artifact
                if not carries:
                    donor_rgb, donor_region = self._item(self.donors[int(rng.integers(len(self.donors)))])
                    rgb = counterfactual.paste(rgb, donor_rgb, donor_region)
                    carries = True
            elif carries and region is not None:  # this epoch, it does not
                rgb = counterfactual.remove(rgb, region)
                carries = False
        x = normalize(augment(rgb, self.spec, rng), self.spec)
        return torch.from_numpy(x), self.samples[index].label, carries


def finetune(model: nn.Module, dataset: RevisionDataset, *, epochs: int, lr: float, batch_size: int,
             weight_decay: float = 0.05, penalty=None,
             progress: Optional[Callable[[str], None]] = None) -> list[dict]:
    """AdamW at a constant `lr` for `epochs` over `dataset`; with `penalty` (RightReasonLoss)
    its term is added to the cross-entropy. Returns one history row per epoch."""
    from torch.utils.data import RandomSampler

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                  weight_decay=weight_decay)
    history = []
    generator = torch.Generator().manual_seed(dataset.seed)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=RandomSampler(dataset, generator=generator),
                        drop_last=len(dataset) > batch_size)
    for epoch in range(1, epochs + 1):
        dataset.epoch = epoch
        model.train()
        losses, extras = [], []
        for x, y, _ in loader:
            if penalty is not None:
                logits, term = penalty.forward_with_penalty(model, x)
                extras.append(float(term.detach()))
            else:
                logits, term = model(x), None
            loss = nn.functional.cross_entropy(logits, y)
            if term is not None:
                loss = loss + term
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        history.append({"epoch": epoch, "loss": round(float(np.mean(losses)), 5),
                        **({"penalty": round(float(np.mean(extras)), 5)} if extras else {})})
        if progress:
            progress(f"fine-tune epoch {epoch}/{epochs}: loss {history[-1]['loss']:.4f}")
    model.eval()
    return history
