"""Which training images carry the artifact, and where it is in each, from the audit's sources:
the generator's artifact masks (metadata.csv's `artifact` / `artifact_mask`), the detected dark
field (real data: no masks), or a metadata column (`COLUMN=VALUE`: a ruler column, a source
hospital), whose masks are used where the CSV names them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from ..data.dark_field import detect_dark_field
from ..data.decode import decode_image
from ..data.readers import Sample
from ..errors import UsageError, display_path


@dataclass
class ArtifactSet:
    name: str  # "ring" or "COLUMN=VALUE"
    source: str  # in words, for revision.json and the README
    carries: np.ndarray  # (n,) bool, one per training sample
    masks: list[Optional[Path]]  # the artifact's mask file per sample, where there is one
    detect: bool  # regions without a mask file come from the dark-field detector (the ring)

    def region(self, index: int, rgb: np.ndarray) -> Optional[np.ndarray]:
        """bool (H, W) at `rgb`'s size, or None when this artifact has no region for the image."""
        if not self.carries[index]:
            return np.zeros(rgb.shape[:2], bool)
        mask = self.masks[index]
        if mask is not None:
            try:
                grey = decode_image(mask)
            except Exception:  # noqa: BLE001 - a broken mask: fall back as if there were none
                grey = None
            if grey is not None:
                grey = grey if grey.ndim == 2 else grey[..., 0]
                return cv2.resize(grey, rgb.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 127
        if self.detect:
            return detect_dark_field(rgb).region(*rgb.shape[:2])
        return None

    def summary(self) -> dict:
        return {"artifact": self.name, "source": self.source, "training_images": int(len(self.carries)),
                "carrying": int(self.carries.sum()), "with_mask": int(sum(m is not None for m in self.masks))}


def _rows_by_path(data: Path) -> Optional[dict[str, dict]]:
    import csv

    csv_path = data if data.is_file() else data / "metadata.csv"
    if not csv_path.is_file():
        return None
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    column = next((c for c in ("image", "path", "filename", "image_name") if rows and c in rows[0]), None)
    if column is None:
        return None
    return {str((csv_path.parent / row[column]).resolve()): row for row in rows}


def find_artifact(data: Path, samples: list[Sample], artifact: str) -> ArtifactSet:
    """The artifact `ring` or `COLUMN=VALUE` over `samples` (the parent run's training split)."""
    rows = _rows_by_path(Path(data))
    matched = [rows.get(str(Path(s.path).resolve())) if rows else None for s in samples]
    have_rows = rows is not None and all(m is not None for m in matched)

    def mask_of(row) -> Optional[Path]:
        name = (row or {}).get("artifact_mask") or ""
        return (Path(data if Path(data).is_dir() else Path(data).parent) / name) if name else None

    if artifact == "ring":
        if have_rows and "artifact" in matched[0]:
            carries = np.array([m["artifact"] == "ring" for m in matched])
            return ArtifactSet("ring", "the dataset's artifact column and masks (artifact == ring)", carries,
                               [mask_of(m) if c else None for m, c in zip(matched, carries)], True)
        carries = np.array([detect_dark_field(decode_image(s.path, reduce_to=256)).is_ring for s in samples])
        return ArtifactSet("ring", "the dark-field detector (no artifact column in the data)", carries,
                           [None] * len(samples), True)
    column, sep, value = artifact.partition("=")
    if not sep or not column:
        raise UsageError(f"--artifact takes 'ring' or COLUMN=VALUE (a metadata column), got {artifact!r}")
    if not have_rows:
        raise UsageError(f"--artifact {artifact}: {display_path(Path(data))} has no metadata CSV row for every "
                         "training image, so a column cannot name the artifact")
    if column not in matched[0]:
        raise UsageError(f"--artifact {artifact}: no column {column!r} in the metadata (columns: {list(matched[0])})")
    carries = np.array([(m.get(column) or "").strip() == value for m in matched])
    if not carries.any():
        raise UsageError(f"--artifact {artifact}: no training image has {column} == {value!r}")
    return ArtifactSet(artifact, f"the metadata column {column} == {value}", carries,
                       [mask_of(m) if c else None for m, c in zip(matched, carries)], False)
