"""One pass over a dataset before training: which files decode, and a perceptual hash of each.

Broken files are listed with the reason and skipped (never fatal: one bad JPEG in 25,000 should
not stop a training run); the hashes feed near-duplicate finding and grouped splitting.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .decode import ImageDecodeError, decode_image
from .readers import LabeledImages, Sample

# pHash looks at a 32x32 thumbnail: a large JPEG may be decoded at reduced scale for it
HASH_DECODE_SIZE = 256


@dataclass
class ScanResult:
    samples: list[Sample]  # the readable ones, in dataset order
    hashes: np.ndarray  # uint64 perceptual hash per readable sample (empty when not asked for)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def perceptual_hash(rgb: np.ndarray) -> int:
    """64-bit DCT hash (imagehash.phash) packed into an int; robust to resizing and JPEG."""
    import imagehash
    from PIL import Image

    bits = imagehash.phash(Image.fromarray(rgb)).hash.flatten()
    return int(np.packbits(bits.astype(np.uint8)).view(">u8")[0])


def _scan_one(sample: Sample, with_hash: bool) -> tuple[int | None, str | None]:
    try:
        rgb = decode_image(sample.path, reduce_to=HASH_DECODE_SIZE)
        return (perceptual_hash(rgb) if with_hash else 0), None
    except ImageDecodeError as exc:
        return None, exc.reason


def scan_dataset(dataset: LabeledImages, workers: int | None = None, progress: bool = True,
                 with_hashes: bool = True) -> ScanResult:
    """Decode every image once (threads: Pillow releases the GIL while decoding).
    with_hashes=False: only sort readable from unreadable (evaluation needs no duplicates)."""
    from tqdm.auto import tqdm

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(
            tqdm(
                pool.map(lambda sample: _scan_one(sample, with_hashes), dataset.samples),
                total=len(dataset.samples),
                desc="scanning images",
                disable=not progress,
                leave=False,
            )
        )
    readable, hashes, unreadable = [], [], []
    for sample, (h, reason) in zip(dataset.samples, results):
        if reason is None:
            readable.append(sample)
            hashes.append(h)
        else:
            unreadable.append((str(sample.path), reason))
    return ScanResult(readable, np.asarray(hashes if with_hashes else [], dtype=np.uint64), unreadable)
