"""Dataset readers: a folder of class subfolders, or a ground-truth CSV (ISIC 2016-2020, or a
generic `image,label` table such as the synthetic generator's metadata.csv).

A reader only lists samples (path, label, group); it opens no image. Checking that files decode
is the scan's job (`lesionlens.data.scan`), so a broken file is reported, not fatal.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

from ..errors import DatasetError, display_path, one_line
from ..names import class_list_problem, class_name_problem, invalid_names

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
# Image formats we recognise but cannot decode (no codec in Pillow): `predict` reports them.
UNSUPPORTED_IMAGE_EXTENSIONS = (".heic", ".heif", ".avif", ".jxl", ".jp2", ".dng", ".cr2", ".nef")
SPLIT_DIR_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
# Names that mean "the class a clinician must not miss"; the first one present is the positive
# class unless the user names another.
POSITIVE_CLASS_NAMES = ("melanoma", "malignant", "mel")


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
    for name in class_names:  # a class folder's name is its class name: in file names, pages, reports
        problem = class_name_problem(name)
        if problem:
            raise DatasetError(f"{display_path(root / name)}: this class folder's name {problem}")
    problem = class_list_problem(class_names)
    if problem:
        raise DatasetError(f"{display_path(root)}: {problem}")
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


_TRUE = {"1", "1.0", "true", "yes", "malignant"}
_FALSE = {"0", "0.0", "false", "no", "benign"}


def _binary(value: str) -> Optional[bool]:
    """A ground-truth flag: 1/0, 1.0/0.0, true/false, malignant/benign; None for anything else
    (an empty cell, NaN, "maybe"), which the caller reports instead of guessing."""
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    return None


def _bad_rows_error(csv_path: Path, what: str, bad: list[tuple[int, str]]) -> DatasetError:
    shown = ", ".join(f"line {line} ({one_line(repr(value))})" for line, value in bad[:5])
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    return DatasetError(f"{display_path(csv_path)}: {len(bad)} row(s) with {what}: {shown}{more}")


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


def _read_rows(csv_path: Path) -> list[tuple[int, list[str]]]:
    """(line number, cells) for every non-blank row, with errors that name the file and line."""
    try:
        raw = csv_path.read_bytes()
    except PermissionError:
        raise DatasetError(f"{display_path(csv_path)}: permission denied") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DatasetError(f"{display_path(csv_path)}, line {line}: not UTF-8 text (byte {raw[exc.start]:#04x}); "
                           "save the CSV as UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        for cells in reader:
            if cells and any(cell.strip() for cell in cells):
                rows.append((reader.line_num, cells))
    except csv.Error as exc:
        raise DatasetError(f"{display_path(csv_path)}, line {reader.line_num}: {exc}") from None
    return rows


def read_csv(csv_path: Path, image_root: Optional[Path] = None) -> LabeledImages:
    """Read a ground-truth CSV; images resolve relative to `image_root` (default: the CSV's
    folder). The format is detected from the header. Rows with a missing or unreadable label
    are an error naming the file and the lines, never a guess."""
    csv_path = Path(csv_path)
    image_root = Path(image_root) if image_root else csv_path.parent
    rows = _read_rows(csv_path)
    if not rows:
        raise DatasetError(f"{display_path(csv_path)}: the CSV is empty")
    fmt = _detect_csv_format(rows[0][1])
    if fmt == "isic2016":
        short = [(line, ",".join(r)) for line, r in rows if len(r) < 2]
        if short:
            raise _bad_rows_error(csv_path, "fewer than 2 columns", short)
        flags = [(line, r[0], _binary(r[1]), r[1]) for line, r in rows]
        bad = [(line, raw) for line, _, flag, raw in flags if flag is None]
        if bad:
            raise _bad_rows_error(csv_path, "a label that is not benign/malignant or 0/1", bad)
        records = [(name, "malignant" if flag else "benign", None, line) for line, name, flag, _ in flags]
        classes = ["benign", "malignant"]
    else:
        header = [h.strip() for h in rows[0][1]]
        short = [(line, ",".join(r)) for line, r in rows[1:] if len(r) < len(header)]
        if short:
            raise _bad_rows_error(csv_path, f"fewer than the header's {len(header)} columns", short)
        dict_rows = [(line, dict(zip(header, (c.strip() for c in r)))) for line, r in rows[1:]]
        lower = {h.lower(): h for h in header}
        records, classes = _records(csv_path, fmt, header, lower, dict_rows)
    missing_names = [(line, name) for name, _, _, line in records if not name.strip()]
    if missing_names:
        raise _bad_rows_error(csv_path, "no image name", missing_names)
    # one-hot layouts name their classes in the header (line 1); the others in each row's label
    _check_class_names(csv_path, records, classes, header=fmt == "isic-onehot")
    index = {name: i for i, name in enumerate(classes)}
    samples = [Sample(_resolve(image_root, name), index[label], group) for name, label, group, _ in records]
    return LabeledImages(samples, classes, str(csv_path), fmt)


def _check_class_names(csv_path: Path, records: list, classes: list[str], header: bool) -> None:
    """DatasetError naming the file and the lines whose label is not a valid class name (or
    the header, for one-hot columns): a label becomes a file-name part, page text, a CSV header."""
    first_line: dict[str, int] = {}
    for _, label, _, line in records:
        first_line.setdefault(label, 1 if header else line)
    bad = invalid_names((first_line.get(name, 1), name) for name in classes)
    if bad:
        shown = ", ".join(f"line {line}: {reason}" for line, reason in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise DatasetError(f"{display_path(csv_path)}: {len(bad)} label(s) that cannot be class names: {shown}{more}")
    problem = class_list_problem(classes)
    if problem:
        raise DatasetError(f"{display_path(csv_path)}: {problem}")


def _records(csv_path: Path, fmt: str, header: list[str], lower: dict, dict_rows: list) -> tuple[list, list[str]]:
    """(image, label, group, line) per row and the class list, for the headed CSV formats."""
    if fmt in ("isic2020", "isic2017"):
        flag_cols = ["target"] if fmt == "isic2020" else ["melanoma", "seborrheic_keratosis"]
        bad = [(line, r[lower[c]]) for line, r in dict_rows for c in flag_cols if _binary(r[lower[c]]) is None]
        if bad:
            raise _bad_rows_error(csv_path, f"a {'/'.join(flag_cols)} value that is not 0/1", bad)
    if fmt == "isic2020":
        classes = ["benign", "malignant"]
        return [(r[lower["image_name"]], classes[int(_binary(r[lower["target"]]))], _group_of(r), line)
                for line, r in dict_rows], classes
    if fmt == "isic2017":
        records = []
        for line, r in dict_rows:
            if _binary(r[lower["melanoma"]]):
                label = "melanoma"
            elif _binary(r[lower["seborrheic_keratosis"]]):
                label = "seborrheic_keratosis"
            else:
                label = "nevus"
            records.append((r[lower["image_id"]], label, _group_of(r), line))
        return records, ["melanoma", "nevus", "seborrheic_keratosis"]
    if fmt == "isic-onehot":
        image_col = lower["image"]
        label_cols = [h for h in header if h != image_col and h.lower() not in ("patient_id", "lesion_id")]
        records, bad = [], []
        for line, r in dict_rows:
            flags = [_binary(r[h]) for h in label_cols]
            hot = [h for h, f in zip(label_cols, flags) if f]
            if None in flags or len(hot) != 1:
                bad.append((line, f"{len(hot)} labels set" if None not in flags else "a value that is not 0/1"))
                continue
            records.append((r[image_col], hot[0], _group_of(r), line))
        if bad:
            raise _bad_rows_error(csv_path, "not exactly one label set to 1", bad)
        used = {label for _, label, _, _ in records}
        # 2019's UNK column is all zeros: a class with no example cannot be learned.
        return records, [h for h in label_cols if h in used]
    image_col = next(lower[c] for c in ("image", "path", "filename", "image_name", "image_id") if c in lower)
    label_col = lower["label"]
    bad = [(line, r[label_col]) for line, r in dict_rows if r[label_col].strip().lower() in ("", "nan", "none", "null", "na")]
    if bad:
        raise _bad_rows_error(csv_path, "an empty or NaN label", bad)
    records = [(r[image_col], r[label_col], _group_of(r), line) for line, r in dict_rows]
    return records, sorted({label for _, label, _, _ in records})


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
    return LabeledImages(samples, classes, dataset.source, dataset.format)
