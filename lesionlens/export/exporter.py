"""`lesionlens export RUN --out DIR`: the fp32 ONNX model and its optional variants, each with
the contract's metadata, each validated against PyTorch, plus an optional Triton repository.

    DIR/model.onnx            float32 NCHW in (preprocessed), logits + probs out
    DIR/model.fp16.onnx       --fp16: fp16 inside, same float32 interface (for GPUs)
    DIR/model.uint8.onnx      --uint8-input: uint8 NHWC pixels at the model's size in
    DIR/model.uint8.fp16.onnx --fp16 --uint8-input: both (the fastest GPU path end to end)
    DIR/model.int8.onnx       --int8: static int8 quantisation (the fastest CPU path)
    DIR/validation.json       every check, every number, pass or fail
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..data.decode import ImageDecodeError, decode_image
from ..data.preprocess import PreprocessSpec, resize_to_spec
from ..data.readers import read_dataset, restrict_to_classes
from ..runtime.metadata import FlagPolicy, ModelMetadata
from ..training.checkpoint import write_json
from ..training.rundir import load_run, spec_of, versions
from .graph import DEFAULT_OPSET, ProbabilityHead, Uint8Input, export_graph
from .validate import Probe, random_probe, validate_variant
from .variants import convert_fp16, quantize_int8

log = logging.getLogger("lesionlens")


class ExportError(RuntimeError):
    """The export failed validation (details in validation.json)."""


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


def _pixels(paths_labels: list[tuple[Path, int]], spec: PreprocessSpec, limit: int) -> tuple[np.ndarray, np.ndarray]:
    pixels, labels = [], []
    for path, label in paths_labels:
        if len(pixels) >= limit:
            break
        try:
            pixels.append(resize_to_spec(decode_image(path), spec))
            labels.append(label)
        except ImageDecodeError:
            continue
    if not pixels:
        return np.zeros((0, spec.size, spec.size, 3), np.uint8), np.zeros(0, int)
    return np.stack(pixels), np.array(labels)


def real_images(run: Path, meta: dict, options: ExportOptions, splits: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Up to max_images real, labelled images: from --data, else the run's splits.csv."""
    spec, classes = spec_of(meta), meta["classes"]
    if options.data:
        dataset = restrict_to_classes(read_dataset(options.data, options.image_root), classes)
        items = [(s.path, s.label) for s in dataset.samples]
        rng = np.random.default_rng(0)
        items = [items[i] for i in rng.permutation(len(items))]
    else:
        items = []
        splits_csv = run / "splits.csv"
        if splits_csv.is_file():
            with open(splits_csv, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if r["split"] in splits and r["label"] in classes]
            items = [(Path(r["image"]), classes.index(r["label"])) for r in rows]
    return _pixels(items, spec, options.max_images)


def build_metadata(meta: dict, options: ExportOptions, input_format: str, precision: str) -> ModelMetadata:
    import onnx
    import onnxruntime

    classes = meta["classes"]
    positive = meta.get("positive_class")
    policy = FlagPolicy(positive, classes.index(positive) if positive else None, meta.get("decision_threshold"),
                        options.min_confidence)
    return ModelMetadata(
        classes=classes, preprocessing=spec_of(meta), flag_policy=policy, arch=meta["arch"],
        weights_sha256=meta["weights_sha256"], input_format=input_format, precision=precision,
        versions={**versions(), "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                  "trained_with": meta.get("versions", {})},
        opset=options.opset,
    )


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


def export_run(run: Path, out: Path, options: ExportOptions = ExportOptions()) -> dict:
    """Export and validate; returns the validation report (also written to out/validation.json).
    Raises ExportError if any variant misses its bounds; its file is renamed *.rejected.onnx."""
    run, out = Path(run), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, meta = load_run(run)
    spec = spec_of(meta)
    probes = [random_probe(spec)]
    val_pixels, val_labels = real_images(run, meta, options, ("val", "test"))
    if len(val_pixels):
        probes.append(Probe(val_pixels, val_labels, f"{len(val_pixels)} real images"))
    else:
        log.warning("no real images found for validation (run's splits.csv images missing and no --data); "
                    "validating on random inputs only")

    plans = [("model.onnx", "float32_nchw", "fp32")]
    if options.fp16:
        plans.append(("model.fp16.onnx", "float32_nchw", "fp16"))
    if options.uint8_input:
        plans.append(("model.uint8.onnx", "uint8_nhwc", "fp32"))
        if options.fp16:
            plans.append(("model.uint8.fp16.onnx", "uint8_nhwc", "fp16"))
    if options.int8:
        plans.append(("model.int8.onnx", "float32_nchw", "int8"))

    report: dict = {"run": str(run), "arch": meta["arch"], "weights_sha256": meta["weights_sha256"],
                    "probes": [p.source for p in probes], "variants": {}}
    failed = []
    for name, input_format, precision in plans:
        path = out / name
        if precision == "fp32":
            module = ProbabilityHead(model) if input_format == "float32_nchw" else Uint8Input(model, spec.mean, spec.std)
            example = (torch.zeros(2, 3, spec.size, spec.size) if input_format == "float32_nchw"
                       else torch.zeros(2, spec.size, spec.size, 3, dtype=torch.uint8))
            export_graph(module, example, path, options.opset)
        elif precision == "fp16":
            convert_fp16(out / ("model.onnx" if input_format == "float32_nchw" else "model.uint8.onnx"), path)
        else:
            calib, _ = real_images(run, meta, options, ("train",))
            quantize_int8(out / "model.onnx", path, calib, spec)
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
    for name in failed:
        (out / name).replace(out / name.replace(".onnx", ".rejected.onnx"))
    if options.triton_repo and not failed:
        best = "model.uint8.fp16.onnx" if options.uint8_input and options.fp16 else (
            "model.uint8.onnx" if options.uint8_input else "model.fp16.onnx" if options.fp16 else "model.onnx")
        from .triton import write_triton_repo

        report["triton"] = {"config": str(write_triton_repo(out / best, options.triton_repo)), "model": best}
    report["passed"] = not failed
    write_json(out / "validation.json", report)
    if failed:
        raise ExportError(f"{', '.join(failed)} failed validation (see {out / 'validation.json'})")
    return report
