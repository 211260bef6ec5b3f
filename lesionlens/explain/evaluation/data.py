"""The images explain-eval scores, with their ground-truth masks where the data has them.

Any layout `read_dataset` knows gives images and labels. The synthetic generator's
metadata.csv also names a lesion mask and, for images with a planted artifact, an artifact
mask (columns `lesion_mask`, `artifact_mask`, relative to the CSV's folder); real data without
those columns is scored on everything but localisation. Where the CSV also lists each image's
dermoscopic features and their masks (`features`, `feature_masks`: ";"-joined, the generator's
CLEVR-XAI-style ground truth), those are read too, for the feature-level localisation. Masks go
through the same geometric preprocessing as their image, so mask and heatmap pixels line up.

A file that does not decode is reported (path and reason) and skipped; the rest are scored.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import cv2
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
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}: images not loaded
    masks_known: Optional[np.ndarray] = None  # (N,) bool: both masks read (None without masks)
    mask_problems: list[dict] = field(default_factory=list)  # {"image", "mask", "reason"}
    feature_masks: Optional[dict[str, np.ndarray]] = None  # feature -> (N, S, S) bool; None without the columns
    features_known: Optional[np.ndarray] = None  # (N,) bool: every feature mask of the image read
    positive: Optional[int] = None  # the run's positive class (melanoma), for the feature-level scores


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
        with_features = "features" in reader.fieldnames and "feature_masks" in reader.fieldnames
        for row in reader:
            image = (root / row["image"]).resolve()
            out[str(image)] = {kind: (root / row[column]) if row.get(column) else None
                               for kind, column in (("lesion", "lesion_mask"), ("artifact", "artifact_mask"))}
            if with_features:
                out[str(image)]["features"] = _feature_paths(root, row)
    return out


def _feature_paths(root: Path, row: dict) -> dict[str, Path] | str:
    """{feature: mask path} from the row's ";"-joined columns, or a reason they do not pair up."""
    names = [n.strip() for n in (row.get("features") or "").split(";") if n.strip()]
    paths = [p.strip() for p in (row.get("feature_masks") or "").split(";") if p.strip()]
    if len(names) != len(paths):
        return f"{len(names)} features but {len(paths)} feature masks"
    return {name: root / path for name, path in zip(names, paths)}


def _read_mask(path: Optional[Path], size: tuple[int, int], spec: PreprocessSpec) -> np.ndarray:
    if path is None:
        return np.zeros((spec.size, spec.size), bool)
    from ...data.decode import decode_image

    mask = decode_image(path, reduce_to=spec.size)  # a mask is an image: the same limits
    if mask.shape[:2] != size:
        # decoded at reduced scale (a large JPEG mask) or drawn for another image: compare shapes
        if abs(mask.shape[0] * size[1] - mask.shape[1] * size[0]) > max(size):
            raise ImageDecodeError(str(path), f"mask is {mask.shape[1]}x{mask.shape[0]}, its image {size[1]}x{size[0]}")
        mask = cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return resize_to_spec(mask, spec)[..., 0] > 127


def _read_masks(entry: dict, size: tuple[int, int], spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray, Optional[dict]]:
    """(lesion mask, artifact mask, problem or None). A mask that cannot be read is a problem
    naming the mask and the reason; its image is still scored on what needs no mask."""
    try:
        return _read_mask(entry["lesion"], size, spec), _read_mask(entry["artifact"], size, spec), None
    except (ImageDecodeError, OSError, ValueError) as exc:
        empty = np.zeros((spec.size, spec.size), bool)
        reason = exc.reason if isinstance(exc, ImageDecodeError) else one_line(exc)
        where = exc.source if isinstance(exc, ImageDecodeError) else "mask"
        return empty, empty, {"mask": where, "reason": reason}


def _read_features(paths: dict[str, Path] | str, size: tuple[int, int],
                   spec: PreprocessSpec) -> tuple[dict[str, np.ndarray], Optional[dict]]:
    """({feature: mask}, problem or None), like _read_masks: a feature mask that cannot be read
    leaves the image out of the feature-level scores, not out of the rest."""
    if isinstance(paths, str):
        return {}, {"mask": "feature_masks", "reason": paths}
    try:
        return {name: _read_mask(path, size, spec) for name, path in paths.items()}, None
    except (ImageDecodeError, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, ImageDecodeError) else one_line(exc)
        return {}, {"mask": exc.source if isinstance(exc, ImageDecodeError) else "feature mask", "reason": reason}


def load_eval_images(data: Path, spec: PreprocessSpec, classes: list[str], n: int, seed: int = 0,
                     image_root: Optional[Path] = None) -> EvalImages:
    """Up to `n` images of `data` (a seeded random choice, stratified by nothing: the data's own
    class mix), preprocessed for `spec`, with masks when the data has them. An image that does
    not decode is skipped (in `skipped`); a mask that does not is named in `mask_problems` and
    its image kept, scored on everything but localisation (`masks_known` False)."""
    dataset = read_dataset(Path(data), image_root)
    unknown = sorted(set(dataset.classes) - set(classes))
    if unknown:
        raise DatasetError(f"{data}: classes {unknown} are not among the model's {classes}")
    remap = [classes.index(name) for name in dataset.classes]
    order = np.random.default_rng(seed).permutation(len(dataset.samples))
    masks = _mask_columns(Path(data))
    paths, labels, rgbs, lesions, artifacts, known, skipped, problems = [], [], [], [], [], [], [], []
    features, features_known = [], []  # per kept image: {feature: mask}, read or not
    for index in order:
        if len(paths) >= n:
            break
        sample = dataset.samples[index]
        try:
            rgb = decode_for(sample.path, spec)
            sized = resize_to_spec(rgb, spec)
        except (ImageDecodeError, OSError, ValueError) as exc:
            skipped.append({"path": str(sample.path), "reason": exc.reason if isinstance(exc, ImageDecodeError)
                            else one_line(exc)})
            continue
        entry = masks.get(str(Path(sample.path).resolve()))
        lesion = artifact = np.zeros((spec.size, spec.size), bool)
        problem = {"mask": "-", "reason": "not in the CSV's mask columns"}
        if entry is not None:
            lesion, artifact, problem = _read_masks(entry, rgb.shape[:2], spec)
        if problem and masks:
            problems.append({"image": str(sample.path), **problem})
        found, feature_problem = {}, {"reason": "no feature columns"}
        if entry is not None and "features" in entry:
            found, feature_problem = _read_features(entry["features"], rgb.shape[:2], spec)
            if feature_problem:
                problems.append({"image": str(sample.path), **feature_problem})
        features.append(found)
        features_known.append(feature_problem is None)
        lesions.append(lesion)
        artifacts.append(artifact)
        known.append(problem is None)
        paths.append(Path(sample.path))
        labels.append(remap[sample.label])
        rgbs.append(sized)
    if not paths:
        raise DatasetError(f"{data}: no image could be read ({len(skipped)} skipped)")
    has_masks = bool(masks)
    has_features = any("features" in entry for entry in masks.values())
    feature_masks = None
    if has_features:
        empty = np.zeros((spec.size, spec.size), bool)
        names = sorted({name for found in features for name in found})
        feature_masks = {name: np.stack([found.get(name, empty) for found in features]) for name in names}
    rgb = np.stack(rgbs)
    return EvalImages(paths, np.asarray(labels), np.stack([normalize(r, spec) for r in rgb]), rgb,
                      np.stack(lesions) if has_masks else None, np.stack(artifacts) if has_masks else None,
                      list(classes), skipped, np.asarray(known) if has_masks else None, problems,
                      feature_masks, np.asarray(features_known) if has_features else None)
