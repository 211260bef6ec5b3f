"""The dataset half of `lesionlens audit`: no model needed.

One threaded pass decodes every image, runs the dark-field (microscope ring) detector and takes
a perceptual hash. Then:
- the ring against the label (per class: ring share, P(class | ring); Fisher / chi-square,
  Cramer's V);
- every metadata column of the CSV (source, site, device, the synthetic `artifact`...) against
  the label, the same way: merged sources are how the original ring shortcut arose;
- near-duplicates inside and across splits, and twins with different labels;
- class balance, and the files that failed to decode (named, with the reason).
"""

from __future__ import annotations

import csv
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..data.decode import ImageDecodeError, decode_image
from ..data.duplicates import duplicate_clusters, near_duplicate_pairs
from ..data.readers import IMAGE_EXTENSIONS, LabeledImages, read_dataset
from ..data.scan import perceptual_hash
from ..errors import DatasetError, display_path, one_line
from ..data.dark_field import DarkField, detect_dark_field
from .stats import associate, pool_rare

DECODE_SIZE = 256  # px on the shorter side: plenty for a 64-px detector and a 32-px hash
# columns that name an image, a mask, a label or an id: never tested against the label
SKIP_COLUMNS = {"image", "image_name", "image_id", "path", "filename", "label", "target", "benign_malignant",
                "diagnosis", "lesion_mask", "artifact_mask", "patient_id", "lesion_id",
                # the generator's dermoscopic features: what the label depends on, not a shortcut
                "features", "feature_masks"}
MAX_LEVELS = 50  # a column with more distinct values is an identifier, not a category


@dataclass
class ImageRecord:
    path: Path
    label: int
    split: Optional[str]
    dark_field: Optional[DarkField] = None
    hash: Optional[int] = None
    error: Optional[str] = None


@dataclass
class DatasetAudit:
    classes: list[str]
    records: list[ImageRecord]
    findings: list[dict] = field(default_factory=list)
    timings: dict = field(default_factory=dict)  # seconds per stage

    @property
    def readable(self) -> list[ImageRecord]:
        return [r for r in self.records if r.error is None]


def _inspect(record: ImageRecord) -> ImageRecord:
    try:
        rgb = decode_image(record.path, reduce_to=DECODE_SIZE)
    except ImageDecodeError as exc:
        record.error = exc.reason
        return record
    record.dark_field = detect_dark_field(rgb)
    record.hash = perceptual_hash(_inside_field(rgb, record.dark_field))
    return record


def _inside_field(rgb: np.ndarray, field: DarkField) -> np.ndarray:
    """The square inscribed in a ring's field: a 32-px perceptual hash of a whole ring photo is
    mostly the black frame, and unrelated ring photos would pass for near-duplicates."""
    if not field.is_ring:
        return rgb
    h, w = rgb.shape[:2]
    cx, cy, r = field.circle
    half = r * w / np.sqrt(2)
    x0, x1 = max(0, int(cx * w - half)), min(w, int(cx * w + half))
    y0, y1 = max(0, int(cy * h - half)), min(h, int(cy * h + half))
    return rgb[y0:y1, x0:x1] if x1 - x0 >= 16 and y1 - y0 >= 16 else rgb


def metadata_rows(data: Path, dataset: LabeledImages) -> Optional[list[dict]]:
    """The CSV row of every sample (in sample order), or None when there is no CSV: for a CSV
    the reader keeps its row order; a folder's metadata.csv is matched by resolved image path."""
    csv_path = data if data.is_file() else data / "metadata.csv"
    if not csv_path.is_file():
        return None
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if data.is_file():
        return rows if len(rows) == len(dataset.samples) else None
    image_col = next((c for c in ("image", "path", "filename", "image_name") if rows and c in rows[0]), None)
    if image_col is None:
        return None
    by_path = {str((csv_path.parent / row[image_col]).resolve()): row for row in rows}
    matched = [by_path.get(str(Path(s.path).resolve())) for s in dataset.samples]
    return matched if all(m is not None for m in matched) else None


def _categorical_columns(rows: list[dict]) -> list[str]:
    out = []
    for column in rows[0]:
        if column.strip().lower() in SKIP_COLUMNS:
            continue
        values = [(row.get(column) or "").strip() for row in rows]
        if any(v.lower().endswith(IMAGE_EXTENSIONS) for v in values[:50]):
            continue  # a path column
        if 2 <= len(set(values)) <= min(MAX_LEVELS, max(2, len(values) // 5)):
            out.append(column)
    return out


def _ring_finding(records: list[ImageRecord], classes: list[str]) -> dict:
    ring = [r.dark_field.is_ring for r in records]
    labels = [r.label for r in records]
    result = associate(["ring" if x else "no ring" for x in ring], labels, classes)
    per_class = {}
    n_ring = sum(ring)
    for k, name in enumerate(classes):
        in_class = [x for x, label in zip(ring, labels) if label == k]
        per_class[name] = {"images": len(in_class), "ring_share": (sum(in_class) / len(in_class)) if in_class else None,
                           "p_class_given_ring": (sum(1 for x, label in zip(ring, labels) if x and label == k) / n_ring)
                           if n_ring else None,
                           "p_class_given_no_ring": (sum(1 for x, label in zip(ring, labels) if not x and label == k)
                                                     / (len(ring) - n_ring)) if len(ring) > n_ring else None}
    return {"kind": "ring_label_association", "subject": "microscope ring (dark field)", "test": result.test,
            "p_value": result.p_value, "effect_size": result.cramers_v, "effect_measure": "Cramer's V",
            "evidence": {"ring_images": n_ring, "images": len(ring), "per_class": per_class, **result.to_dict()},
            "_association": result}


def _column_findings(rows: list[dict], records: list[ImageRecord], classes: list[str]) -> list[dict]:
    columns = _categorical_columns(rows)
    out = []
    for column in columns:
        values = pool_rare([(row.get(column) or "").strip() or "(empty)" for row in rows])
        result = associate(values, [r.label for r in records], classes)
        out.append({"kind": "metadata_association", "subject": f"column {column!r}", "test": result.test,
                    "p_value": result.p_value, "effect_size": result.cramers_v, "effect_measure": "Cramer's V",
                    "evidence": result.to_dict(), "_association": result})
    return out


def _duplicate_finding(records: list[ImageRecord], classes: list[str]) -> dict:
    hashes = np.asarray([r.hash for r in records], dtype=np.uint64)
    pairs = near_duplicate_pairs(hashes)
    clusters = duplicate_clusters(len(records), pairs)
    across = [(i, j) for i, j, _ in pairs if records[i].split and records[j].split and records[i].split != records[j].split]
    conflicting = [(i, j) for i, j, _ in pairs if records[i].label != records[j].label]
    examples = [{"a": str(records[i].path), "b": str(records[j].path), "distance": d,
                 "labels": [classes[records[i].label], classes[records[j].label]]} for i, j, d in pairs[:10]]
    return {"kind": "near_duplicates", "subject": "near-duplicate images (perceptual hash)",
            "p_value": None, "effect_size": len(across) / max(1, len(pairs)) if pairs else 0.0,
            "effect_measure": "share of duplicate pairs that cross splits",
            "evidence": {"pairs": len(pairs), "images_in_a_pair": len({i for p in pairs for i in p[:2]}),
                "groups_of_twins": len({int(clusters[i]) for p in pairs for i in p[:2]}),
                "pairs_across_splits": len(across), "pairs_with_different_labels": len(conflicting),
                "splits_known": any(r.split for r in records), "examples": examples},
            "flagged": bool(across or conflicting)}


def _balance_finding(records: list[ImageRecord], classes: list[str]) -> dict:
    counts = np.bincount([r.label for r in records], minlength=len(classes))
    smallest = counts.min() / max(1, counts.sum())
    return {"kind": "class_balance", "subject": "class balance", "p_value": None,
            "effect_size": float(counts.max() / max(1, counts.min())), "effect_measure": "largest / smallest class",
            "evidence": {"counts": {c: int(n) for c, n in zip(classes, counts)}},
            "flagged": bool(smallest < 0.05)}


def audit_dataset(data: Path, image_root: Optional[Path] = None, splits: Optional[dict[str, str]] = None,
                  workers: Optional[int] = None, progress: bool = True) -> DatasetAudit:
    """Every image once; `splits` ({resolved path: split}, e.g. a run's splits.csv) places the
    duplicates, otherwise the dataset's own split folders do."""
    from tqdm.auto import tqdm

    data = Path(data)
    dataset = read_dataset(data, image_root)
    if not dataset.samples:  # an empty audit is a mistake in the arguments, not a clean bill
        raise DatasetError(f"{display_path(data)}: no images to audit ({dataset.format} layout)")
    splits = splits or {}
    records = [ImageRecord(Path(s.path), s.label, splits.get(str(Path(s.path).resolve()), s.split))
               for s in dataset.samples]
    timings = {}
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        records = list(tqdm(pool.map(_inspect, records), total=len(records), desc="auditing images",
                            disable=not progress, leave=False))
    timings["decode + detector + hash"] = time.perf_counter() - start
    audit = DatasetAudit(list(dataset.classes), records, timings=timings)
    readable = audit.readable
    start = time.perf_counter()
    findings = []
    if readable:
        findings.append(_ring_finding(readable, audit.classes))
        rows = metadata_rows(data, dataset)
        if rows is not None:
            kept = [row for row, r in zip(rows, records) if r.error is None]
            findings.extend(_column_findings(kept, readable, audit.classes))
        # one Bonferroni correction over every association test of this audit
        tests = sum(1 for f in findings if "_association" in f)
        for f in findings:
            f["flagged"] = f.pop("_association").flagged(tests)
            f["tests_corrected_for"] = tests
        findings.append(_duplicate_finding(readable, audit.classes))
        findings.append(_balance_finding(readable, audit.classes))
    unreadable = [{"path": display_path(r.path), "reason": one_line(r.error)} for r in records if r.error]
    findings.append({"kind": "unreadable", "subject": "images that failed to decode", "p_value": None,
                     "effect_size": float(len(unreadable)), "effect_measure": "images",
                     "evidence": {"images": unreadable}, "flagged": bool(unreadable)})
    timings["statistics + duplicates"] = time.perf_counter() - start
    audit.findings = findings
    return audit
