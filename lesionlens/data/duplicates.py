"""Near-duplicate images by Hamming distance between 64-bit perceptual hashes.

Public melanoma sets are full of them (the same lesion photographed twice, re-crops, re-uploads);
a duplicate on both sides of a split turns validation into memorisation.
"""

from __future__ import annotations

import numpy as np

DEFAULT_MAX_DISTANCE = 6  # of 64 bits; re-encodes and small crops land well below this


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    bytes_ = x.view(np.uint8).reshape(*x.shape, 8)
    return np.unpackbits(bytes_, axis=-1).sum(axis=-1)


def near_duplicate_pairs(
    hashes: np.ndarray, max_distance: int = DEFAULT_MAX_DISTANCE, chunk: int = 1024
) -> list[tuple[int, int, int]]:
    """All pairs (i, j, distance) with i < j and Hamming distance <= max_distance.

    Brute force in chunks: O(n^2) 64-bit XORs is ~0.3 s for 25k images and needs no index.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    pairs: list[tuple[int, int, int]] = []
    for start in range(0, len(hashes), chunk):
        block = hashes[start : start + chunk]
        dist = _popcount(block[:, None] ^ hashes[None, :])
        rows, cols = np.nonzero(dist <= max_distance)
        for r, c in zip(rows.tolist(), cols.tolist()):
            i = start + r
            if i < c:
                pairs.append((i, c, int(dist[r, c])))
    return pairs


def duplicate_clusters(n: int, pairs: list[tuple[int, int, int]]) -> np.ndarray:
    """Union-find over the pairs: cluster id per item (items without twins are their own)."""
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, _ in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(n)])
