"""`lesionlens predict`: expand files / folders / globs into inputs, classify them, and write
exactly one row per input (an error row for a bad one) as CSV or JSON lines."""

from __future__ import annotations

import csv
import glob
import io
import json
import sys
from pathlib import Path
from typing import Optional, Sequence, TextIO

from ..data.readers import IMAGE_EXTENSIONS
from .classifier import Classifier, Prediction


def expand_inputs(args: Sequence[str]) -> list[str]:
    """Folders give their image files (recursively, sorted; like the dataset reader, subfolders
    starting with "_" or "." are skipped: masks, caches); globs are expanded here too (for
    quoted patterns and shells that do not); anything else is kept as given, so a missing path
    becomes an error row instead of vanishing."""
    out: list[str] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            out.extend(str(p) for p in sorted(path.rglob("*"))
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                       and not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts[:-1]))
        elif not path.exists() and glob.has_magic(arg):
            matches = [m for m in sorted(glob.glob(arg, recursive=True)) if Path(m).is_file()]
            out.extend(matches or [arg])
        else:
            out.append(arg)
    return out


def _csv_rows(predictions: list[Prediction], classes: list[str]):
    header = ["path", "label", *[f"prob_{c}" for c in classes], "flagged", "flag_reason", "error"]
    yield header
    for p in predictions:
        probs = [f"{p.probabilities[c]:.6f}" if p.ok else "" for c in classes]
        yield [p.source, p.label or "", *probs, int(p.flagged) if p.ok else "", p.flag_reason, p.error or ""]


def write_results(predictions: list[Prediction], classes: list[str], out: Optional[Path], stream: TextIO = sys.stdout) -> None:
    as_jsonl = out is not None and out.suffix.lower() in (".jsonl", ".json")
    buffer = io.StringIO()
    if as_jsonl:
        for p in predictions:
            buffer.write(json.dumps(p.to_dict()) + "\n")
    else:
        csv.writer(buffer).writerows(_csv_rows(predictions, classes))
    if out is None:
        stream.write(buffer.getvalue())
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(buffer.getvalue())
        tmp.replace(out)


def predict_paths(model: Path, inputs: Sequence[str], out: Optional[Path], provider: str = "auto",
                  batch_size: int = 32, progress: bool = True) -> tuple[list[Prediction], Classifier]:
    classifier = Classifier(model, providers=provider, max_batch=batch_size)
    paths = expand_inputs(inputs)
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional for the runtime extra
        tqdm = None
    bar = tqdm(total=len(paths), desc="predicting", disable=not progress, file=sys.stderr) if tqdm else None
    predictions = classifier.predict(paths, on_batch=bar.update if bar else None)
    if bar:
        bar.close()
    write_results(predictions, classifier.classes, out)
    return predictions, classifier
