"""The run directory contract, owned here and nowhere else: its file names (`RunDir`) and
model.json's schema (`RunMetadata`, with a format version checked on read). Written by `train`;
read by `evaluate`, `export`, `explain`, the atlas, the sidecar and the demo.

Torch-free at import: the sidecar validates a run before it loads torch. `load_run`,
`save_run` and `random_run` import torch when called.
"""

from __future__ import annotations

import csv
import io
import platform
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from .._io import read_json, sha256_file, write_json, write_text
from ..data.preprocess import PreprocessSpec
from ..data.readers import Sample
from ..errors import RunError, display_path
from ..names import class_list_problem
from .architectures import get_spec

# 1: model.json without a format_version (sessions before the RunDir contract); same schema.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
REVISION_METHODS = ("augment", "frame", "unframe", "pclarc", "rrclarc")  # lesionlens revise --method
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class RunMetadata:
    """model.json: everything a consumer of a finished run needs to know."""

    arch: str
    classes: list[str]
    preprocessing: PreprocessSpec
    weights_sha256: str
    positive_class: Optional[str] = None
    decision_threshold: Optional[float] = None
    target_sensitivity: Optional[float] = None
    weights_file: str = "model.safetensors"
    versions: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    best_epoch: Optional[int] = None
    distributed: dict = field(default_factory=dict)
    # `lesionlens revise`: {"method", "parent": {"run", "weights_sha256"}, "artifact", "layer", ...};
    # empty for a model as trained
    revision: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)  # keys written by later versions, kept on rewrite

    def __post_init__(self) -> None:
        self.validate()

    @property
    def positive_index(self) -> Optional[int]:
        return None if self.positive_class is None else self.classes.index(self.positive_class)

    def validate(self, source: str = "model.json") -> None:
        def bad(reason: str) -> RunError:
            return RunError(f"{source}: {reason}")

        if not isinstance(self.arch, str) or not self.arch:
            raise bad("'arch' is missing or not a name")
        try:
            get_spec(self.arch)
        except ValueError:
            raise bad(f"unknown architecture {self.arch!r}") from None
        if (not isinstance(self.classes, list) or len(self.classes) < 2
                or not all(isinstance(c, str) and c.strip() for c in self.classes)
                or len(set(self.classes)) != len(self.classes)):
            raise bad(f"'classes' must list >= 2 distinct, non-empty names, got {self.classes!r}")
        problem = class_list_problem(self.classes)
        if problem:  # a hand-edited model.json is data too: its names reach pages and file names
            raise bad(problem)
        if self.positive_class is not None and self.positive_class not in self.classes:
            raise bad(f"positive_class {self.positive_class!r} is not one of {self.classes}")
        t = self.decision_threshold
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1):
            raise bad(f"decision_threshold must be a number in [0, 1], got {t!r}")
        if not isinstance(self.weights_sha256, str) or not _SHA256.match(self.weights_sha256):
            raise bad("'weights_sha256' is missing or not a sha256 hex digest")
        if not isinstance(self.revision, dict):
            raise bad("'revision' must be an object")
        if self.revision:
            if self.revision.get("method") not in REVISION_METHODS:
                raise bad(f"revision method {self.revision.get('method')!r} is not one of {REVISION_METHODS}")
            if self.revision["method"] == "pclarc" and not isinstance(self.revision.get("layer"), str):
                raise bad("a P-ClArC revision needs the 'layer' its projection follows")
        if self.format_version not in READABLE_VERSIONS:
            raise bad(f"format version {self.format_version} is not one this lesionlens reads "
                      f"({READABLE_VERSIONS}); use the lesionlens version that wrote it")

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("extra", "preprocessing")}
        out["preprocessing"] = self.preprocessing.to_dict()
        out["format_version"] = FORMAT_VERSION
        return {**self.extra, **out}

    @classmethod
    def from_dict(cls, data: Any, source: str = "model.json") -> "RunMetadata":
        if not isinstance(data, dict):
            raise RunError(f"{source}: expected a JSON object")
        known = {f.name for f in fields(cls)} - {"extra"}
        version = data.get("format_version", 1)
        if version not in READABLE_VERSIONS:
            raise RunError(f"{source}: format version {version!r} is not one this lesionlens reads "
                           f"({READABLE_VERSIONS}); use the lesionlens version that wrote it")
        missing = [k for k in ("arch", "classes", "preprocessing", "weights_sha256") if k not in data]
        if missing:
            raise RunError(f"{source}: missing {missing}")
        try:
            spec = PreprocessSpec.from_dict(data["preprocessing"])
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise RunError(f"{source}: bad preprocessing spec ({exc})") from None
        values = {k: v for k, v in data.items() if k in known and k != "preprocessing"}
        try:
            meta = cls(preprocessing=spec, extra={k: v for k, v in data.items() if k not in known}, **values)
        except RunError as exc:
            raise RunError(str(exc).replace("model.json", source, 1)) from None
        except TypeError as exc:
            raise RunError(f"{source}: malformed ({exc})") from None
        return meta


class RunDir:
    """The files of one run directory. Every layer asks this object for a path."""

    WEIGHTS = "model.safetensors"
    METADATA = "model.json"
    METRICS = "metrics.json"
    HISTORY = "history.csv"
    SPLITS = "splits.csv"
    DUPLICATES = "duplicates.csv"
    DATA_SUMMARY = "data_summary.json"
    PLOTS = "plots"
    CHECKPOINT = "checkpoint"
    CONCEPT_ATLAS = "concept_atlas"
    EXPLAIN_EVAL = "explain_eval"
    SPLIT_COLUMNS = ("image", "label", "group", "split")

    def __init__(self, path: "Path | str | RunDir"):
        self.path = Path(path.path if isinstance(path, RunDir) else path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ---- paths ------------------------------------------------------------------------------
    weights = property(lambda self: self.path / self.WEIGHTS)
    metadata_file = property(lambda self: self.path / self.METADATA)
    metrics_file = property(lambda self: self.path / self.METRICS)
    history_file = property(lambda self: self.path / self.HISTORY)
    splits_file = property(lambda self: self.path / self.SPLITS)
    duplicates_file = property(lambda self: self.path / self.DUPLICATES)
    summary_file = property(lambda self: self.path / self.DATA_SUMMARY)
    plots = property(lambda self: self.path / self.PLOTS)
    checkpoint = property(lambda self: self.path / self.CHECKPOINT)
    concept_atlas = property(lambda self: self.path / self.CONCEPT_ATLAS)
    explain_eval = property(lambda self: self.path / self.EXPLAIN_EVAL)  # explain-eval's default report folder

    def is_finished(self) -> bool:
        """model.json is written last: its presence marks a finished run."""
        return self.metadata_file.is_file()

    # ---- model.json -------------------------------------------------------------------------
    def read_metadata(self) -> RunMetadata:
        if not self.path.is_dir():
            raise RunError(f"{display_path(self.path)}: not a finished run directory (no such folder)")
        if not self.is_finished():
            raise RunError(f"{display_path(self.path)}: not a finished run directory ({self.METADATA} missing)")
        return RunMetadata.from_dict(read_json(self.metadata_file, RunError), display_path(self.metadata_file))

    def write_metadata(self, meta: RunMetadata) -> None:
        write_json(self.metadata_file, meta.to_dict())

    def verify_weights(self, meta: RunMetadata) -> str:
        """The weights file's sha256, after checking it is the one model.json records."""
        if not self.weights.is_file():
            raise RunError(f"{display_path(self.weights)}: weights file missing")
        actual = sha256_file(self.weights)
        if actual != meta.weights_sha256:
            raise RunError(f"{display_path(self.weights)}: sha256 {actual} differs from {self.METADATA}'s "
                           f"{meta.weights_sha256} (weights or model.json changed after training)")
        return actual

    # ---- the other files --------------------------------------------------------------------
    def read_metrics(self) -> dict:
        return read_json(self.metrics_file, RunError)

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.metrics_file, metrics)

    def read_summary(self) -> dict:
        return read_json(self.summary_file, RunError)

    def write_summary(self, summary: dict) -> None:
        write_json(self.summary_file, summary)

    def write_splits(self, samples: Sequence[Sample], classes: Sequence[str]) -> None:
        rows = ([str(s.path), classes[s.label], s.group or "", s.split] for s in samples)
        write_text(self.splits_file, _csv_text(self.SPLIT_COLUMNS, rows))

    def read_splits(self, classes: Sequence[str], splits: Optional[Iterable[str]] = None) -> list[Sample]:
        """The run's samples (with .split), optionally only those of `splits`; labels index
        `classes`. The one reader of splits.csv."""
        wanted = set(splits) if splits is not None else None
        index = {c: i for i, c in enumerate(classes)}
        try:
            with open(self.splits_file, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if reader.fieldnames is None or not set(self.SPLIT_COLUMNS) <= set(reader.fieldnames):
                    raise RunError(f"{display_path(self.splits_file)}: expected columns {list(self.SPLIT_COLUMNS)}")
                samples = []
                for row in reader:
                    if wanted is not None and row["split"] not in wanted:
                        continue
                    if row["label"] not in index:
                        raise RunError(f"{display_path(self.splits_file)}, line {reader.line_num}: "
                                       f"label {row['label']!r} is not one of {list(classes)}")
                    samples.append(Sample(Path(row["image"]), index[row["label"]], row["group"] or None, row["split"]))
        except FileNotFoundError:
            raise RunError(f"{display_path(self.splits_file)}: missing") from None
        return samples

    def write_duplicates(self, rows: Iterable[Sequence]) -> None:
        header = ("image_a", "split_a", "image_b", "split_b", "hamming_distance")
        write_text(self.duplicates_file, _csv_text(header, rows))

    def write_history(self, history: list[dict]) -> None:
        if history:
            write_text(self.history_file, _csv_text(list(history[0]), ([row[k] for k in history[0]] for row in history)))


def _csv_text(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


# ---- models from runs (torch) ----------------------------------------------------------------

def versions() -> dict[str, str]:
    import numpy
    import timm
    import torch

    from .. import __version__

    return {"lesionlens": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}


def load_run(run: "Path | str | RunDir", device: str = "cpu"):
    """(model in eval mode on `device`, RunMetadata). Refuses weights whose sha256 differs from
    the one recorded at training time, and weights that do not fit the recorded architecture."""
    from .checkpoint import load_weights
    from .models import create_model
    from .revision import apply_revision

    run = RunDir(run)
    meta = run.read_metadata()
    run.verify_weights(meta)
    model = apply_revision(create_model(meta.arch, len(meta.classes)), meta.revision)
    load_weights(model, run.weights, meta.arch)
    # the normalised input's range, for LRP's z-box rule (explain/rules.py)
    model.lesionlens_input_bounds = meta.preprocessing.input_bounds()
    return model.to(device).eval(), meta


def save_run(run: "Path | str | RunDir", model, arch: str, classes: list[str], spec: PreprocessSpec,
             decision_threshold: Optional[float] = None, positive_class: Optional[str] = None,
             **extra: Any) -> RunDir:
    """Write a minimal run directory (weights + model.json) around a model trained elsewhere,
    so it can be exported, explained and served like one `lesionlens train` made."""
    from .checkpoint import save_weights

    run = RunDir(run)
    sha = save_weights(model, run.weights)
    known = {f.name for f in fields(RunMetadata)}
    meta = RunMetadata(arch=arch, classes=list(classes), preprocessing=spec, weights_sha256=sha,
                       positive_class=positive_class, decision_threshold=decision_threshold, versions=versions(),
                       **{k: v for k, v in extra.items() if k in known},
                       extra={k: v for k, v in extra.items() if k not in known})
    run.write_metadata(meta)
    return run


def random_run(run: "Path | str", arch: str, size: int = 224, classes=("benign", "melanoma"), seed: int = 0) -> Path:
    """A run around random weights, BatchNorm statistics warmed on noise so activations are
    not trivial: for benchmarks and tests that need an architecture, not a trained model."""
    import torch

    from .models import classifier_of, create_model

    torch.manual_seed(seed)
    model = create_model(arch, len(classes)).train()
    classifier = classifier_of(model)
    # logits of order 1, as in a trained model (the training init keeps them tiny on purpose)
    torch.nn.init.normal_(classifier.weight, std=classifier.in_features ** -0.5)
    with torch.no_grad():
        # timm zero-initialises each residual block's last BatchNorm scale (a training trick);
        # left at zero, every residual branch is cut and e.g. CRP's default layer gets no relevance
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d) and not module.weight.any():
                module.weight.fill_(1.0)
        for _ in range(3):
            model(torch.randn(8, 3, size, size))
    return save_run(run, model.eval(), arch, list(classes), PreprocessSpec(size=size), 0.5, classes[-1]).path
