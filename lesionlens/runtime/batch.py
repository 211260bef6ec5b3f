"""`lesionlens predict`: expand files / folders / globs into inputs, classify them, and write
exactly one row per input (an error row for a bad one) as CSV or JSON lines."""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, TextIO

from .._io import write_text
from ..escape import spreadsheet_cell
from ..data.readers import IMAGE_EXTENSIONS, UNSUPPORTED_IMAGE_EXTENSIONS
from .classifier import Classifier, Prediction


@dataclass
class Inputs:
    """What `expand_inputs` found: every entry to report on (in order), each with an error when
    it cannot even be tried, and the files it passed over on purpose (not image files)."""

    entries: list[tuple[str, Optional[str]]] = field(default_factory=list)  # (path, error or None)
    not_images: list[str] = field(default_factory=list)


def _is_candidate(path: str) -> bool:
    suffix = os.path.splitext(path)[1].lower()
    return suffix in IMAGE_EXTENSIONS or suffix in UNSUPPORTED_IMAGE_EXTENSIONS


def _walk_folder(root: str, found: Inputs) -> None:
    """Every image-like file under `root`, sorted; subfolders starting with "_" or "." are
    skipped (masks, caches), like the dataset reader. Unreadable folders, symlinked folders,
    dangling and looping symlinks become entries with an error instead of vanishing."""
    def unreadable(exc: OSError) -> None:
        found.entries.append((exc.filename or root, f"cannot list folder ({exc.strerror or exc})"))

    for folder, dirs, files in os.walk(root, onerror=unreadable, followlinks=False):
        dirs.sort()
        for name in list(dirs):
            full = os.path.join(folder, name)
            if name.startswith(("_", ".")):
                dirs.remove(name)
            elif os.path.islink(full):
                dirs.remove(name)
                found.entries.append((full, "symbolic link to a folder, not followed"))
        for name in sorted(files):
            full = os.path.join(folder, name)
            if _is_candidate(full) or os.path.islink(full):
                found.entries.append((full, None))  # decoding says why a link is dangling or loops
            else:
                found.not_images.append(full)


def expand_inputs(args: Sequence[str]) -> Inputs:
    """Folders give their image files (recursively); globs are expanded here too (for quoted
    patterns and shells that do not); anything else is kept as given, so a missing path becomes
    an error row instead of vanishing."""
    found = Inputs()
    for arg in args:
        if os.path.isdir(arg):  # a folder named on the command line is walked even if it is a link
            _walk_folder(arg, found)
        elif not os.path.lexists(arg) and glob.has_magic(arg):
            matches = [m for m in sorted(glob.glob(arg, recursive=True)) if not os.path.isdir(m)]
            found.entries.extend((m, None) for m in (matches or [arg]))
        else:
            found.entries.append((arg, None))
    return found


# Text cells (paths, labels, reasons, headers) go through spreadsheet_cell: a file called
# "=HYPERLINK(...).jpg" must reach a spreadsheet as text, not as a formula. Numbers stay numbers.
def _csv_rows(predictions: list[Prediction], classes: list[str]):
    header = ["path", "label", *[spreadsheet_cell(f"prob_{c}") for c in classes], "flagged", "flag_reason", "error"]
    yield header
    for p in predictions:
        probs = [f"{p.probabilities[c]:.6f}" if p.ok else "" for c in classes]
        yield [spreadsheet_cell(p.source), spreadsheet_cell(p.label or ""), *probs, int(p.flagged) if p.ok else "",
               spreadsheet_cell(p.flag_reason), spreadsheet_cell(p.error or "")]


def _isic_rows(predictions: list[Prediction], classes: list[str]):
    """The ISIC challenge submission layout: `image` (the file name without its extension) and
    one probability column per class; it has no place for errors, so failed inputs are left out
    (the caller reports them)."""
    yield ["image", *(spreadsheet_cell(c) for c in classes)]
    for p in predictions:
        if p.ok:
            yield [spreadsheet_cell(Path(p.source).stem), *(f"{p.probabilities[c]:.6f}" for c in classes)]


FORMATS = ("csv", "jsonl", "isic")


def write_results(predictions: list[Prediction], classes: list[str], out: Optional[Path], stream: TextIO = sys.stdout,
                  fmt: Optional[str] = None) -> None:
    if fmt is None:
        fmt = "jsonl" if out is not None and out.suffix.lower() in (".jsonl", ".json") else "csv"
    buffer = io.StringIO()
    if fmt == "isic":
        csv.writer(buffer).writerows(_isic_rows(predictions, classes))
    elif fmt == "jsonl":
        for p in predictions:
            buffer.write(json.dumps(p.to_dict()) + "\n")
    else:
        csv.writer(buffer).writerows(_csv_rows(predictions, classes))
    if out is None:
        stream.write(buffer.getvalue())
    else:
        write_text(out, buffer.getvalue())


def predict_paths(model: Path, inputs: Sequence[str], out: Optional[Path], provider: str = "auto",
                  batch_size: int = 32, progress: bool = True,
                  fmt: Optional[str] = None) -> tuple[list[Prediction], Classifier, Inputs]:
    """One Prediction per entry found, in order (an error row for each that could not be read)."""
    from tqdm.auto import tqdm

    classifier = Classifier(model, providers=provider, max_batch=batch_size)
    found = expand_inputs(inputs)
    readable = [path for path, error in found.entries if error is None]
    with tqdm(total=len(readable), desc="predicting", disable=not progress, file=sys.stderr) as bar:
        classified = iter(classifier.predict(readable, on_batch=bar.update))
    predictions = [next(classified) if error is None else Prediction(path, error=error)
                   for path, error in found.entries]
    write_results(predictions, classifier.classes, out, fmt=fmt)
    return predictions, classifier, found
