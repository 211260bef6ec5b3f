"""`lesionlens export RUN --out DIR`: the fp32 ONNX model and its optional variants, each with
the contract's metadata, each validated against PyTorch, plus an optional Triton repository.

    DIR/model.onnx            float32 NCHW in (preprocessed), logits + probs out
    DIR/model.fp16.onnx       --fp16: fp16 inside, same float32 interface (for GPUs)
    DIR/model.uint8.onnx      --uint8-input: uint8 NHWC pixels at the model's size in
    DIR/model.uint8.fp16.onnx --fp16 --uint8-input: both (the fastest GPU path end to end)
    DIR/model.int8.onnx       --int8: static int8 quantisation (the fastest CPU path)
    DIR/validation.json       every check, every number, pass or fail

Everything is built and validated in a new set folder (DIR/.lesionlens-set/sets/<id>) and made
current, every file at once, only when every variant passes: a failed or killed export never
replaces (or deletes) the models already in DIR, and never leaves a mix of two exports. What
failed validation is kept for inspection as DIR/*.rejected.onnx with DIR/validation.rejected.json.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .._fileset import FileSet
from .._io import write_json
from ..data.preprocess import PreprocessSpec, decode_for, resize_to_spec
from ..data.readers import read_dataset, restrict_to_classes
from ..errors import ExportError, ImageDecodeError, MetadataError, UsageError, display_path
from ..ranges import COUNT, OPSET, PROBABILITY
from ..runtime.metadata import FlagPolicy, ModelMetadata
from ..training.rundir import RunDir, RunMetadata, load_run, versions
from .graph import DEFAULT_OPSET, ProbabilityHead, Uint8Input, export_graph
from .validate import Probe, random_probe, validate_variant
from .variants import convert_fp16, quantize_int8

log = logging.getLogger("lesionlens")


@dataclass
class ExportOptions:
    fp16: bool = False
    uint8_input: bool = False
    int8: bool = False
    triton_repo: Optional[Path] = None
    data: Optional[Path] = None  # real images for validation; default: the run's own splits
    image_root: Optional[Path] = None
    max_images: int = 64
    min_confidence: float = 0.0  # flag predictions whose top probability is below this
    opset: int = DEFAULT_OPSET

    def __post_init__(self) -> None:
        PROBABILITY.check("--flag-uncertain-below", self.min_confidence)
        OPSET.check("--opset", self.opset)
        COUNT.check("--max-images", self.max_images)


def _pixels(paths_labels: list[tuple[Path, int]], spec: PreprocessSpec, limit: int) -> tuple[np.ndarray, np.ndarray]:
    pixels, labels = [], []
    for path, label in paths_labels:
        if len(pixels) >= limit:
            break
        try:
            pixels.append(resize_to_spec(decode_for(path, spec), spec))
            labels.append(label)
        except ImageDecodeError:
            continue
    if not pixels:
        return np.zeros((0, spec.size, spec.size, 3), np.uint8), np.zeros(0, int)
    return np.stack(pixels), np.array(labels)


def real_images(run: RunDir, meta: RunMetadata, options: ExportOptions,
                splits: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Up to max_images real, labelled images: from --data, else the run's splits.csv."""
    if options.data:
        dataset = restrict_to_classes(read_dataset(options.data, options.image_root), meta.classes)
        items = [(s.path, s.label) for s in dataset.samples]
        rng = np.random.default_rng(0)
        items = [items[i] for i in rng.permutation(len(items))]
    else:
        items = [(s.path, s.label) for s in run.read_splits(meta.classes, splits)] if run.splits_file.is_file() else []
    return _pixels(items, meta.preprocessing, options.max_images)


def build_metadata(meta: RunMetadata, options: ExportOptions, input_format: str, precision: str) -> ModelMetadata:
    import onnx
    import onnxruntime

    policy = FlagPolicy(meta.positive_class, meta.positive_index, meta.decision_threshold, options.min_confidence)
    return ModelMetadata(
        classes=meta.classes, preprocessing=meta.preprocessing, flag_policy=policy, arch=meta.arch,
        weights_sha256=meta.weights_sha256, input_format=input_format, precision=precision,
        versions={**versions(), "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                  "trained_with": meta.versions},
        opset=options.opset,
    )


def check_metadata(run: RunDir, meta: RunMetadata, options: ExportOptions) -> None:
    """UsageError unless the metadata this export would write reads back by the runtime's own
    rules (ModelMetadata.from_props): checked before anything is built or replaced, so a model
    `predict` cannot load never replaces a good one."""
    for input_format, precision in {(f, p) for _, f, p in _plans(options)}:
        props = build_metadata(meta, options, input_format, precision).to_props()
        try:
            ModelMetadata.from_props(props, "the exported model")
        except MetadataError as exc:
            raise UsageError(f"{display_path(run.metadata_file)}: cannot export: {exc}") from None


def attach_metadata(path: Path, metadata: ModelMetadata) -> None:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "lesionlens"
    model.doc_string = f"lesionlens {metadata.arch} classifier over {metadata.classes}"
    onnx.save(model, str(path))


EXPORT_FILES = ("model.onnx", "model.fp16.onnx", "model.uint8.onnx", "model.uint8.fp16.onnx", "model.int8.onnx",
                "validation.json")


def export_run(run: Path, out: Path, options: ExportOptions = ExportOptions()) -> dict:
    """Export and validate; returns the validation report (also written to out/validation.json).
    Raises ExportError if any variant misses its bounds; nothing in `out` is replaced then.

    The models and validation.json change as one set (lesionlens._fileset): a process killed at
    any moment leaves the previous export or the new one, never a mix."""
    run, out = RunDir(run), Path(out)
    check_metadata(run, run.read_metadata(), options)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".export-*"):  # staging folders of killed exports by earlier versions
        shutil.rmtree(stale, ignore_errors=True)
    with FileSet(out, members=lambda name: name in EXPORT_FILES).staging() as stage:
        report, failed = _build(run, stage.path, options)
        if failed:
            for name in failed:
                shutil.move(str(stage.path / name), str(out / name.replace(".onnx", ".rejected.onnx")))
            write_json(out / "validation.rejected.json", report)
            raise ExportError(f"{', '.join(failed)} failed validation (see {display_path(out / 'validation.rejected.json')}); "
                              f"the models already in {display_path(out)} were left as they were")
        if options.triton_repo:
            from .triton import write_triton_repo

            best = report["triton_model"]
            report["triton"] = {"config": str(write_triton_repo(stage.path / best, options.triton_repo)),
                                "model": best}
            write_json(stage.path / "validation.json", report)
        stage.publish()
    (out / "validation.rejected.json").unlink(missing_ok=True)
    return report


def _plans(options: ExportOptions) -> list[tuple[str, str, str]]:
    plans = [("model.onnx", "float32_nchw", "fp32")]
    if options.fp16:
        plans.append(("model.fp16.onnx", "float32_nchw", "fp16"))
    if options.uint8_input:
        plans.append(("model.uint8.onnx", "uint8_nhwc", "fp32"))
        if options.fp16:
            plans.append(("model.uint8.fp16.onnx", "uint8_nhwc", "fp16"))
    if options.int8:
        plans.append(("model.int8.onnx", "float32_nchw", "int8"))
    return plans


def _build(run: RunDir, folder: Path, options: ExportOptions) -> tuple[dict, list[str]]:
    """Every variant into `folder`, each validated; (report, names that failed)."""
    model, meta = load_run(run)
    spec = meta.preprocessing
    probes = [random_probe(spec)]
    val_pixels, val_labels = real_images(run, meta, options, ("val", "test"))
    if len(val_pixels):
        probes.append(Probe(val_pixels, val_labels, f"{len(val_pixels)} real images"))
    else:
        log.warning("no real images found for validation (run's splits.csv images missing and no --data); "
                    "validating on random inputs only")
    report: dict = {"run": str(run.path), "arch": meta.arch, "weights_sha256": meta.weights_sha256,
                    "probes": [p.source for p in probes], "variants": {}}
    failed, plans = [], _plans(options)
    for name, input_format, precision in plans:
        path = folder / name
        if precision == "fp32":
            module = ProbabilityHead(model) if input_format == "float32_nchw" else Uint8Input(model, spec.mean, spec.std)
            example = (torch.zeros(2, 3, spec.size, spec.size) if input_format == "float32_nchw"
                       else torch.zeros(2, spec.size, spec.size, 3, dtype=torch.uint8))
            export_graph(module, example, path, options.opset)
        elif precision == "fp16":
            convert_fp16(folder / ("model.onnx" if input_format == "float32_nchw" else "model.uint8.onnx"), path)
        else:
            calib, _ = real_images(run, meta, options, ("train",))
            quantize_int8(folder / "model.onnx", path, calib, spec)
        attach_metadata(path, build_metadata(meta, options, input_format, precision))
        result = validate_variant(path, model, spec, precision, probes)
        report["variants"][name] = result
        log.info("%s: max |probs diff| %.2e, top-1 agreement %.4f -> %s", name, result["max_abs_probs_diff"],
                 result["min_top1_agreement"], "ok" if result["passed"] else "FAILED")
        if not result["passed"]:
            failed.append(name)
        elif precision == "int8" and result["min_top1_agreement"] < 0.98:
            log.warning("%s agrees with fp32 on only %.1f%% of top-1 predictions; check the accuracy change in "
                        "validation.json before using it", name, 100 * result["min_top1_agreement"])
    names = [name for name, _, _ in plans]
    report["triton_model"] = next(n for n in ("model.uint8.fp16.onnx", "model.uint8.onnx", "model.fp16.onnx",
                                              "model.onnx") if n in names)
    report["passed"] = not failed
    write_json(folder / "validation.json", report)
    return report, failed
