"""Names for CRP concepts from the feature masks their relevance falls on: "globules, 71% of its
relevance", not "channel 1342". A concept's name comes from its top images in the concept atlas
(the images where it carried the most relevance): on each, the share of the concept's positive
conditional relevance on every region (each dermoscopic feature the generator drew, a planted
artifact, the rest of the lesion, the skin); the region with the highest mean share names it.

Only data with feature masks (the synthetic generator's metadata.csv: `features`,
`feature_masks`) can name concepts; on other data a concept keeps its channel number. A concept
whose best region is the artifact is named so: a frame detector in concept form.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np

from ..data.preprocess import PreprocessSpec
from ..data.synth import FEATURES

MIN_SHARE = 0.25  # below this no region dominates: the concept stays unnamed ("mixed")


@lru_cache(maxsize=8)
def _csv_entries(root: str) -> dict:
    from .evaluation.data import _mask_columns

    return _mask_columns(Path(root))


def region_masks(image: Path, spec: PreprocessSpec) -> Optional[dict[str, np.ndarray]]:
    """{region: bool mask at the model's input size} for an image of a generated dataset (its
    metadata.csv beside the class folders), or None when the data has no feature masks."""
    from .evaluation.data import _read_mask

    image = Path(image).resolve()
    for root in (image.parent.parent, image.parent):
        entry = _csv_entries(str(root)).get(str(image)) if (root / "metadata.csv").is_file() else None
        if entry is not None and isinstance(entry.get("features"), dict):
            break
    else:
        return None
    from ..data.decode import decode_image

    size = decode_image(image).shape[:2]
    try:
        lesion = _read_mask(entry["lesion"], size, spec)
        artifact = _read_mask(entry["artifact"], size, spec)
        # only the generator's feature names: a CSV's column is data, not a label to print
        features = {name: _read_mask(path, size, spec) for name, path in entry["features"].items()
                    if name in FEATURES}
    except (OSError, ValueError):
        return None
    return regions_of(features, artifact, lesion)


def regions_of(features: dict[str, np.ndarray], artifact: np.ndarray, lesion: np.ndarray) -> dict[str, np.ndarray]:
    """Every region a concept can be named by, for one image: each feature (less what the
    artifact covers: what lies under a frame is the frame's), the artifact, the rest of the
    lesion and the skin."""
    features = {name: mask & ~artifact for name, mask in features.items()}
    covered = artifact.copy()
    for mask in features.values():
        covered |= mask
    return {**features, "artifact": artifact, "lesion_rest": lesion & ~covered, "skin": ~(lesion | covered)}


def shares(heatmap: np.ndarray, regions: dict[str, np.ndarray]) -> dict[str, float]:
    """The share of the map's positive relevance on each region (regions may overlap: the
    irregular border with what is painted on it, two colour blotches blended together; dots and
    hair own their pixels, synth.paint_over)."""
    positive = np.clip(heatmap, 0, None)
    total = positive.sum()
    if total <= 0:
        return {}
    return {name: float(positive[mask].sum() / total) for name, mask in regions.items() if mask.any()}


def name_from(per_image: list[dict[str, float]]) -> Optional[dict]:
    """{"region", "share", "images", "shares"} from the per-image shares of a concept's top
    images: the region with the highest mean share (a region absent from an image counts 0
    there); None without images, "mixed" when no region reaches MIN_SHARE."""
    per_image = [s for s in per_image if s]
    if not per_image:
        return None
    regions = sorted({name for s in per_image for name in s})
    means = {name: float(np.mean([s.get(name, 0.0) for s in per_image])) for name in regions}
    best = max(means, key=means.get)
    return {"region": best if means[best] >= MIN_SHARE else "mixed", "share": round(means[best], 3),
            "images": len(per_image), "shares": {k: round(v, 3) for k, v in sorted(means.items(), key=lambda kv: -kv[1])}}


def label(name: Optional[dict]) -> Optional[str]:
    """"globules, 71% of its relevance" for a figure or a caption."""
    if not name:
        return None
    if name["region"] == "mixed":
        return f"mixed: no region holds {MIN_SHARE:.0%} of its relevance (best {name['share']:.0%})"
    return f"{name['region'].replace('_', ' ')}, {name['share']:.0%} of its relevance"
