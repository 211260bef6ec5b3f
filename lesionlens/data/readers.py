"""Dataset readers: a folder of class subfolders, or a ground-truth CSV (ISIC 2016-2020, or a
generic `image,label` table such as the synthetic generator's metadata.csv).

A reader only lists samples (path, label, group); it opens no image. Checking that files decode
is the scan's job (`lesionlens.data.scan`), so a broken file is reported, not fatal.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
SPLIT_DIR_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
# Names that mean "the class a clinician must not miss"; the first one present is the positive
# class unless the user names another.
POSITIVE_CLASS_NAMES = ("melanoma", "malignant", "mel")


class DatasetError(ValueError):
    """A dataset cannot be used as given (empty, one class, unknown CSV layout...)."""


@dataclass
class Sample:
    path: Path
    label: int
    group: Optional[str] = None  # patient or lesion id: never split across train/val/test
    split: Optional[str] = None  # predefined split from the dataset layout, if any


@dataclass
class LabeledImages:
    samples: list[Sample]
    classes: list[str]
    source: str
    format: str
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {name: 0 for name in self.classes}
        for s in self.samples:
            out[self.classes[s.label]] += 1
        return out

    def require_trainable(self) -> None:
        """Raise DatasetError unless there is something to learn: >= 2 classes with samples."""
        if not self.samples:
            raise DatasetError(f"{self.source}: no images found ({self.format} layout)")
        present = [name for name, n in self.counts().items() if n > 0]
        if len(present) < 2:
            raise DatasetError(
                f"{self.source}: only one class has images ({', '.join(present)}); "
                "a classifier needs at least two"
            )


def default_positive_class(classes: Sequence[str]) -> Optional[str]:
    lowered = {c.lower(): c for c in classes}
    for name in POSITIVE_CLASS_NAMES:
        if name in lowered:
            return lowered[name]
    return classes[-1] if len(classes) == 2 else None


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _visible_dirs(root: Path) -> list[Path]:
    # "_masks", ".cache" and the like are not classes (the generator keeps its masks in _masks).
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))


def read_folder(root: Path) -> LabeledImages:
    """`root/<class>/*.png`, or `root/{train,val,test}/<class>/*` (e.g. the Kaggle
    melanoma_cancer_dataset), in which case each sample keeps its predefined split."""
    root = Path(root)
    subdirs = _visible_dirs(root)
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_DIR_NAMES]
    if split_dirs and len(split_dirs) == len(subdirs):
        layout = [(SPLIT_DIR_NAMES[d.name.lower()], d) for d in split_dirs]
        fmt = "folder-with-splits"
    else:
        layout = [(None, root)]
        fmt = "folder"
    class_names = sorted({c.name for _, base in layout for c in _visible_dirs(base)})
    index = {name: i for i, name in enumerate(class_names)}
    samples = []
    for split, base in layout:
        for class_dir in _visible_dirs(base):
            for path in sorted(class_dir.rglob("*")):
                if _is_image(path):
                    samples.append(Sample(path, index[class_dir.name], None, split))
    return LabeledImages(samples, class_names, str(root), fmt)


def _resolve(image_root: Path, name: str) -> Path:
    candidate = image_root / name
    if candidate.suffix.lower() in IMAGE_EXTENSIONS:
        return candidate
    for ext in (".jpg", ".jpeg", ".png"):
        with_ext = candidate.with_name(candidate.name + ext)
        if with_ext.exists():
            return with_ext
    # Not found: keep the ISIC convention so the scan reports a clear "file not found".
    return candidate.with_name(candidate.name + ".jpg")


def _truthy(value: str) -> bool:
    try:
        return float(value) >= 0.5
    except ValueError:
        return value.strip().lower() in ("true", "yes", "malignant")


def _group_of(row: dict) -> Optional[str]:
    for key in ("patient_id", "lesion_id"):
        if row.get(key):
            return row[key]
    return None


def _detect_csv_format(header: list[str]) -> str:
    cols = {c.strip().lower() for c in header}
    if {"image_name", "target"} <= cols:
        return "isic2020"
    if {"image_id", "melanoma", "seborrheic_keratosis"} <= cols:
        return "isic2017"
    if "image" in cols and "mel" in cols and "nv" in cols:
        return "isic-onehot"  # 2018 / 2019
    if "label" in cols and cols & {"image", "path", "filename", "image_name", "image_id"}:
        return "generic"
    if len(header) == 2 and header[1].strip().lower() in ("benign", "malignant", "0", "1", "0.0", "1.0"):
        return "isic2016"  # no header row: the first line is already data
    raise DatasetError(
        f"unrecognised CSV columns {header}: expected ISIC 2016 (image,benign|malignant, no "
        "header), 2017 (image_id,melanoma,seborrheic_keratosis), 2018/2019 one-hot "
        "(image,MEL,NV,...), 2020 (image_name,patient_id,...,target) or image,label"
    )


def read_csv(csv_path: Path, image_root: Optional[Path] = None) -> LabeledImages:
    """Read a ground-truth CSV; images resolve relative to `image_root` (default: the CSV's
    folder). The format is detected from the header."""
    csv_path = Path(csv_path)
    image_root = Path(image_root) if image_root else csv_path.parent
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        rows = [r for r in csv.reader(fh) if r and any(cell.strip() for cell in r)]
    if not rows:
        raise DatasetError(f"{csv_path}: the CSV is empty")
    fmt = _detect_csv_format(rows[0])
    if fmt == "isic2016":
        records = [(r[0], "malignant" if _truthy(r[1]) else "benign", None) for r in rows]
        classes = ["benign", "malignant"]
    else:
        header = [h.strip() for h in rows[0]]
        dict_rows = [dict(zip(header, (c.strip() for c in r))) for r in rows[1:]]
        lower = {h.lower(): h for h in header}
        if fmt == "isic2020":
            classes = ["benign", "malignant"]
            records = [
                (r[lower["image_name"]], classes[int(_truthy(r[lower["target"]]))], _group_of(r))
                for r in dict_rows
            ]
        elif fmt == "isic2017":
            classes = ["melanoma", "nevus", "seborrheic_keratosis"]
            records = []
            for r in dict_rows:
                if _truthy(r[lower["melanoma"]]):
                    label = "melanoma"
                elif _truthy(r[lower["seborrheic_keratosis"]]):
                    label = "seborrheic_keratosis"
                else:
                    label = "nevus"
                records.append((r[lower["image_id"]], label, _group_of(r)))
        elif fmt == "isic-onehot":
            image_col = lower["image"]
            label_cols = [h for h in header if h != image_col and h.lower() not in ("patient_id", "lesion_id")]
            records = []
            for r in dict_rows:
                hot = [h for h in label_cols if _truthy(r[h])]
                if len(hot) != 1:
                    raise DatasetError(f"{csv_path}: row for {r[image_col]} has {len(hot)} labels set, expected 1")
                records.append((r[image_col], hot[0], _group_of(r)))
            used = {label for _, label, _ in records}
            # 2019's UNK column is all zeros: a class with no example cannot be learned.
            classes = [h for h in label_cols if h in used]
        else:
            image_col = next(lower[c] for c in ("image", "path", "filename", "image_name", "image_id") if c in lower)
            label_col = lower["label"]
            records = [(r[image_col], r[label_col], _group_of(r)) for r in dict_rows]
            classes = sorted({label for _, label, _ in records})
    index = {name: i for i, name in enumerate(classes)}
    samples = [Sample(_resolve(image_root, name), index[label], group) for name, label, group in records]
    return LabeledImages(samples, classes, str(csv_path), fmt)


def read_dataset(data: Path, image_root: Optional[Path] = None) -> LabeledImages:
    """`data` is a folder (class subfolders) or a CSV (format auto-detected)."""
    data = Path(data)
    if not data.exists():
        raise DatasetError(f"{data}: no such file or folder")
    if data.is_dir():
        if image_root:
            raise DatasetError("--image-root only applies when --data is a CSV")
        return read_folder(data)
    if data.suffix.lower() != ".csv":
        raise DatasetError(f"{data}: --data takes a folder of class subfolders or a .csv file")
    return read_csv(data, image_root)


def restrict_to_classes(dataset: LabeledImages, classes: Iterable[str]) -> LabeledImages:
    """Re-index a dataset's labels onto a model's class list (for `evaluate` on other data)."""
    classes = list(classes)
    missing = [c for c in dataset.classes if c not in classes]
    if missing:
        raise DatasetError(
            f"{dataset.source}: classes {missing} are unknown to the model (it knows {classes})"
        )
    remap = {i: classes.index(name) for i, name in enumerate(dataset.classes)}
    samples = [Sample(s.path, remap[s.label], s.group, s.split) for s in dataset.samples]
    return LabeledImages(samples, classes, dataset.source, dataset.format, dataset.notes)
