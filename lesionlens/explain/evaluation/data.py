"""The images explain-eval scores, with their ground-truth masks where the data has them.

Any layout `read_dataset` knows gives images and labels. The synthetic generator's
metadata.csv also names a lesion mask and, for images with a planted artifact, an artifact
mask (columns `lesion_mask`, `artifact_mask`, relative to the CSV's folder); real data without
those columns is scored on everything but localisation. Masks go through the same geometric
preprocessing as their image, so mask and heatmap pixels line up.

A file that does not decode is reported (path and reason) and skipped; the rest are scored.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ...data.preprocess import PreprocessSpec, decode_for, normalize, resize_to_spec
from ...data.readers import read_dataset
from ...errors import DatasetError, ImageDecodeError, one_line


@dataclass
class EvalImages:
    paths: list[Path]
    labels: np.ndarray  # (N,)
    images: np.ndarray  # (N, 3, S, S) float32, preprocessed
    rgb: np.ndarray  # (N, S, S, 3) uint8, the preprocessed pixels before normalising
    lesion_masks: Optional[np.ndarray]  # (N, S, S) bool, or None without masks
    artifact_masks: Optional[np.ndarray]  # (N, S, S) bool (all False for images without an artifact)
    classes: list[str]
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}


def _mask_columns(data: Path) -> dict[str, dict[str, Optional[Path]]]:
    """{resolved image path: {"lesion": path|None, "artifact": path|None}} from a CSV with mask columns."""
    csv_path = data if data.is_file() else data / "metadata.csv"
    if not csv_path.is_file():
        return {}
    root = csv_path.parent
    out = {}
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "lesion_mask" not in reader.fieldnames:
            return {}
        for row in reader:
            image = (root / row["image"]).resolve()
            out[str(image)] = {kind: (root / row[column]) if row.get(column) else None
                               for kind, column in (("lesion", "lesion_mask"), ("artifact", "artifact_mask"))}
    return out


def _read_mask(path: Optional[Path], size: tuple[int, int], spec: PreprocessSpec) -> np.ndarray:
    if path is None:
        return np.zeros((spec.size, spec.size), bool)
    from ...data.decode import decode_image

    mask = decode_image(path)
    if mask.shape[:2] != size:
        raise ImageDecodeError(path, f"mask is {mask.shape[1]}x{mask.shape[0]}, its image {size[1]}x{size[0]}")
    return resize_to_spec(mask, spec)[..., 0] > 127


def load_eval_images(data: Path, spec: PreprocessSpec, classes: list[str], n: int, seed: int = 0,
                     image_root: Optional[Path] = None) -> EvalImages:
    """Up to `n` images of `data` (a seeded random choice, stratified by nothing: the data's own
    class mix), preprocessed for `spec`, with masks when the data has them."""
    dataset = read_dataset(Path(data), image_root)
    unknown = sorted(set(dataset.classes) - set(classes))
    if unknown:
        raise DatasetError(f"{data}: classes {unknown} are not among the model's {classes}")
    remap = [classes.index(name) for name in dataset.classes]
    order = np.random.default_rng(seed).permutation(len(dataset.samples))
    masks = _mask_columns(Path(data))
    paths, labels, rgbs, lesions, artifacts, skipped = [], [], [], [], [], []
    for index in order:
        if len(paths) >= n:
            break
        sample = dataset.samples[index]
        try:
            rgb = decode_for(sample.path, spec)
            sized = resize_to_spec(rgb, spec)
            entry = masks.get(str(Path(sample.path).resolve()))
            pair = None if entry is None else (_read_mask(entry["lesion"], rgb.shape[:2], spec),
                                               _read_mask(entry["artifact"], rgb.shape[:2], spec))
        except (ImageDecodeError, OSError, ValueError) as exc:
            skipped.append({"path": str(sample.path), "reason": one_line(exc)})
            continue
        if pair is not None:
            lesions.append(pair[0])
            artifacts.append(pair[1])
        paths.append(Path(sample.path))
        labels.append(remap[sample.label])
        rgbs.append(sized)
    if not paths:
        raise DatasetError(f"{data}: no image could be read ({len(skipped)} skipped)")
    has_masks = len(lesions) == len(paths)
    rgb = np.stack(rgbs)
    return EvalImages(paths, np.asarray(labels), np.stack([normalize(r, spec) for r in rgb]), rgb,
                      np.stack(lesions) if has_masks else None, np.stack(artifacts) if has_masks else None,
                      list(classes), skipped)
