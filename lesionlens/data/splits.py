"""Stratified, grouped, seeded train/val/test splits that keep patients and near-duplicates
together, and the report of any duplicates that still cross a split (predefined splits)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .duplicates import DEFAULT_MAX_DISTANCE, duplicate_clusters, near_duplicate_pairs
from .readers import DatasetError, Sample


@dataclass
class SplitResult:
    samples: list[Sample]  # every sample with .split set to train, val or test
    duplicate_pairs: list[tuple[int, int, int]]  # (i, j, distance) over `samples`
    cross_split_pairs: list[tuple[int, int, int]]

    def summary(self) -> dict:
        by_split: dict[str, int] = {}
        for s in self.samples:
            by_split[s.split] = by_split.get(s.split, 0) + 1
        held_out_with_train_twin = set()
        for i, j, _ in self.cross_split_pairs:
            a, b = self.samples[i].split, self.samples[j].split
            if a == "train" and b != "train":
                held_out_with_train_twin.add(j)
            elif b == "train" and a != "train":
                held_out_with_train_twin.add(i)
        held_out = sum(n for name, n in by_split.items() if name != "train")
        return {
            "counts": by_split,
            "near_duplicate_pairs": len(self.duplicate_pairs),
            "cross_split_duplicate_pairs": len(self.cross_split_pairs),
            "held_out_images_with_train_duplicate": len(held_out_with_train_twin),
            "held_out_duplicate_fraction": round(len(held_out_with_train_twin) / held_out, 4) if held_out else 0.0,
        }

    def duplicate_rows(self):
        """(image_a, split_a, image_b, split_b, hamming_distance) per near-duplicate pair."""
        for i, j, d in self.duplicate_pairs:
            a, b = self.samples[i], self.samples[j]
            yield [str(a.path), a.split, str(b.path), b.split, d]


def _carve(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of a held-out part of about `fraction`, stratified by label, whole groups."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_splits = max(2, round(1 / fraction))
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise DatasetError(
            f"only {n_groups} patient/lesion groups: too few to hold out {fraction:.0%} of them"
        )
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, held = next(splitter.split(np.zeros(len(labels)), labels, groups))
    mask = np.zeros(len(labels), dtype=bool)
    mask[held] = True
    return mask


def split_dataset(
    samples: list[Sample],
    hashes: np.ndarray,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    max_hash_distance: Optional[int] = DEFAULT_MAX_DISTANCE,
) -> SplitResult:
    """Assign train/val(/test). Samples with a predefined split keep it ("val" and "test" from the
    dataset layout are respected); the rest are split by group, where a group is the patient /
    lesion id joined with every near-duplicate of its images, so neither crosses a split."""
    if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise DatasetError("need 0 < val_fraction, 0 <= test_fraction, and their sum < 1")
    n = len(samples)
    pairs = near_duplicate_pairs(hashes, max_hash_distance) if max_hash_distance is not None else []
    clusters = duplicate_clusters(n, pairs)
    # Merge patient groups with duplicate clusters: union over "same group" and "same cluster".
    group_keys = [s.group if s.group else f"__image_{i}" for i, s in enumerate(samples)]
    first_of_group: dict[str, int] = {}
    links = [(first_of_group.setdefault(g, i), i, 0) for i, g in enumerate(group_keys)]
    links += [(int(clusters[i]), i, 0) for i in range(n)]
    merged = duplicate_clusters(n, links)

    out = [Sample(s.path, s.label, s.group, s.split) for s in samples]
    free = np.array([s.split in (None, "train") for s in out])
    has_val = any(s.split == "val" for s in out)
    labels = np.array([s.label for s in out])
    free_idx = np.nonzero(free)[0]
    remaining = free_idx
    if test_fraction > 0 and not any(s.split == "test" for s in out):
        mask = _carve(labels[remaining], merged[remaining], test_fraction, seed)
        for i in remaining[mask]:
            out[i].split = "test"
        remaining = remaining[~mask]
    if not has_val:
        frac = val_fraction / (1 - test_fraction) if test_fraction > 0 else val_fraction
        mask = _carve(labels[remaining], merged[remaining], frac, seed + 1)
        for i in remaining[mask]:
            out[i].split = "val"
        remaining = remaining[~mask]
    for i in remaining:
        out[i].split = "train"
    cross = [(i, j, d) for i, j, d in pairs if out[i].split != out[j].split]
    return SplitResult(out, pairs, cross)
