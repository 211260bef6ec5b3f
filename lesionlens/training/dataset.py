"""torch Datasets over lesionlens samples: decode -> (augment) -> the shared preprocessing."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.preprocess import PreprocessSpec, decode_for, normalize, preprocess, resize_to_spec
from ..data.readers import Sample
from .augment import augment


class LesionDataset(Dataset):
    """Returns (float32 CHW tensor, label). With `train=True` each item is augmented by a
    generator seeded from (seed, epoch, index), so an epoch's batches are the same whether or
    not the run was interrupted, and whatever the number of loader workers.

    `cache=True` keeps each decoded image, downscaled to ~1.15x the model size, in memory:
    decoding a full-size JPEG costs more than a training step at small sizes. Each loader
    worker has its own copy, so it pays off with few workers (the 2-core default is none).
    """

    def __init__(self, samples: list[Sample], spec: PreprocessSpec, train: bool, seed: int = 0,
                 cache: bool = False):
        self.samples = samples
        self.spec = spec
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.cache = {} if cache else None
        self._cache_spec = PreprocessSpec(
            size=int(round(spec.size * 1.15)), resize="shorter_side_center_crop", interpolation=spec.interpolation
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def _pixels(self, index: int) -> np.ndarray:
        if self.cache is None:
            return decode_for(self.samples[index].path, self.spec)
        if index not in self.cache:
            rgb = decode_for(self.samples[index].path, self.spec)
            # Training crops at random from a slightly larger view; evaluation caches the exact
            # geometric step of the shared preprocessing, so its output is unchanged.
            self.cache[index] = resize_to_spec(rgb, self._cache_spec if self.train else self.spec)
        return self.cache[index]

    def __getitem__(self, index: int):
        rgb = self._pixels(index)
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            chw = normalize(augment(rgb, self.spec, rng), self.spec)
        elif self.cache is not None:
            chw = normalize(rgb, self.spec)  # already resized to the spec by _pixels
        else:
            chw = preprocess(rgb, self.spec)
        return torch.from_numpy(chw), self.samples[index].label
