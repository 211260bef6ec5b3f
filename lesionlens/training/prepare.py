"""From `--data` to the run's fixed splits: read, scan (skip and list unreadable files), find
near-duplicates, split by group, write splits.csv / duplicates.csv / data_summary.json.

A resumed run reads its splits.csv back instead of splitting again, so it trains on exactly the
images it started with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..data.readers import LabeledImages, Sample, read_dataset
from ..data.scan import scan_dataset
from ..data.splits import split_dataset
from ..errors import DatasetError, display_path
from .rundir import RunDir

log = logging.getLogger("lesionlens")


@dataclass
class PreparedData:
    classes: list[str]
    samples: list[Sample]  # with .split set
    summary: dict

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]


def prepare_data(
    data: Path,
    run: RunDir,
    image_root: Optional[Path] = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    max_hash_distance: Optional[int] = 6,
    progress: bool = True,
) -> PreparedData:
    dataset = read_dataset(Path(data), image_root)
    dataset.require_trainable()
    scan = scan_dataset(dataset, progress=progress)
    if scan.unreadable:
        log.warning("skipped %d unreadable image(s) of %d:", len(scan.unreadable), len(dataset.samples))
        for path, reason in scan.unreadable[:20]:
            log.warning("  %s: %s", path, reason)
        if len(scan.unreadable) > 20:
            log.warning("  ... and %d more (all listed in %s)", len(scan.unreadable) - 20, RunDir.DATA_SUMMARY)
    readable = LabeledImages(scan.samples, dataset.classes, dataset.source, dataset.format)
    readable.require_trainable()
    split = split_dataset(scan.samples, scan.hashes, val_fraction, test_fraction, seed, max_hash_distance)
    dup = split.summary()
    if dup["cross_split_duplicate_pairs"]:
        log.warning(
            "%d near-duplicate pair(s) cross splits (predefined by the dataset layout): %d held-out "
            "image(s) (%.1f%%) have a twin in train; see duplicates.csv",
            dup["cross_split_duplicate_pairs"], dup["held_out_images_with_train_duplicate"],
            100 * dup["held_out_duplicate_fraction"],
        )
    run = RunDir(run)
    run.write_splits(split.samples, dataset.classes)
    run.write_duplicates(split.duplicate_rows())
    summary = {
        "source": dataset.source,
        "format": dataset.format,
        "classes": dataset.classes,
        "images_listed": len(dataset.samples),
        "images_used": len(scan.samples),
        "skipped_unreadable": len(scan.unreadable),
        "unreadable": [{"path": p, "reason": r} for p, r in scan.unreadable],
        "grouped_by": "patient/lesion id + near-duplicates" if any(s.group for s in scan.samples) else "near-duplicates",
        "duplicates": dup,
        "class_counts_by_split": {
            name: {c: sum(1 for s in split.samples if s.split == name and s.label == k) for k, c in enumerate(dataset.classes)}
            for name in sorted({s.split for s in split.samples})
        },
    }
    run.write_summary(summary)
    return PreparedData(dataset.classes, split.samples, summary)


def load_prepared(run: RunDir) -> PreparedData:
    """Read back what prepare_data wrote (for --resume and for DDP ranks other than 0)."""
    run = RunDir(run)
    summary = run.read_summary()
    classes = summary["classes"]
    samples = run.read_splits(classes)
    if not samples:
        raise DatasetError(f"{display_path(run.splits_file)}: no samples")
    return PreparedData(classes, samples, summary)
