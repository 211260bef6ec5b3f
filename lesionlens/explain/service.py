"""The explanation sidecar's engine, usable without HTTP (the demo and batch jobs call it).

Production classifies with the ONNX model; the sidecar explains the flagged cases with the
PyTorch weights of the same model. At start-up it validates the whole run against the ONNX
model (model.json's schema, architecture and classes, and one weights hash agreed on by the
weights file, model.json and the ONNX metadata): an explanation of another model is worse than
none. Torch and the weights load lazily on the first request; if that fails, every request is
answered "unavailable" with the reason (HTTP 503) and /health says so. Each answer carries the
weights hash it explained, and a caller may insist on one (`expected_sha256`).

Decoding is bounded (at most `max_decodes` at once; the pixel cap is checked from the header),
so a burst of large or hostile uploads cannot exhaust memory; explanations run on one worker
thread that batches concurrent requests.
"""

from __future__ import annotations

import base64
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .._io import sha256_file
from ..data.decode import decode_image
from ..data.preprocess import preprocess, resize_to_spec
from ..errors import (ExplainError, HashMismatchError, ImageDecodeError, LesionlensError, MetadataError, RequestError,
                      RunError, display_path)
from ..runtime.metadata import ModelMetadata
from ..training.architectures import get_spec
from ..training.rundir import RunDir

DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024
DEFAULT_MAX_DECODES = 2


class ServiceUnavailable(LesionlensError, RuntimeError):
    """The model could not be loaded; the sidecar answers 503 until restarted."""


def onnx_metadata(model_path: Path) -> ModelMetadata:
    """The ONNX model's metadata, checked against its graph (onnx only, no onnxruntime session)."""
    import onnx

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends for a file that is not a model
        raise MetadataError(f"{display_path(model_path)}: not a readable ONNX model ({exc})") from None
    metadata = ModelMetadata.from_props({p.key: p.value for p in model.metadata_props}, display_path(model_path))
    metadata.check_graph([_NodeArg(v) for v in model.graph.input], [_NodeArg(v) for v in model.graph.output],
                         display_path(model_path))
    return metadata


class _NodeArg:
    """An onnx ValueInfo seen as onnxruntime's NodeArg (name, type string, shape)."""

    _TYPES = {1: "tensor(float)", 2: "tensor(uint8)", 10: "tensor(float16)"}

    def __init__(self, value_info):
        tensor = value_info.type.tensor_type
        self.name = value_info.name
        self.type = self._TYPES.get(tensor.elem_type, f"tensor({tensor.elem_type})")
        self.shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in tensor.shape.dim]


def validate_run_for(model_path: Path, run: Path) -> tuple[ModelMetadata, RunDir, str]:
    """(ONNX metadata, run, weights sha256) once the run is shown to be the ONNX model's."""
    model_path, run = Path(model_path), RunDir(run)
    if not model_path.is_file():
        raise RunError(f"{display_path(model_path)}: ONNX model not found")
    metadata = onnx_metadata(model_path)
    meta = run.read_metadata()
    if not run.weights.is_file():
        raise RunError(f"{display_path(run.weights)}: weights not found")
    actual = sha256_file(run.weights)
    if actual != metadata.weights_sha256:
        raise HashMismatchError(
            f"{display_path(run.weights)} has sha256 {actual}, but {display_path(model_path)} was exported from "
            f"weights with sha256 {metadata.weights_sha256}: refusing to explain a different model")
    if meta.weights_sha256 != actual:
        raise RunError(f"{display_path(run.metadata_file)} records weights_sha256 {meta.weights_sha256}, but "
                       f"{display_path(run.weights)} has {actual}: the run was changed after training")
    if meta.arch != metadata.arch or meta.classes != metadata.classes:
        raise RunError(f"{display_path(run.path)} is a {meta.arch} over {meta.classes}, {display_path(model_path)} "
                       f"a {metadata.arch} over {metadata.classes}")
    return metadata, run, actual


@dataclass
class _Job:
    rgb: object
    method: str
    target: Optional[int]
    concepts: int
    future: Future


class ExplanationService:
    def __init__(self, model_path: Path, run: Path, device: str = "auto", max_batch: int = 8,
                 max_upload_bytes: int = DEFAULT_MAX_UPLOAD, max_decodes: int = DEFAULT_MAX_DECODES):
        self.model_path = Path(model_path)
        self.metadata, self.run, self.weights_sha256 = validate_run_for(model_path, run)
        self.methods = get_spec(self.metadata.arch).methods
        self.classes = self.metadata.classes
        self.spec = self.metadata.preprocessing
        self.device_name, self.max_batch, self.max_upload_bytes = device, max_batch, max_upload_bytes
        self.model = None
        self.explainers: dict = {}
        self.atlas = None
        self.load_error: Optional[str] = None
        self.cold_start_seconds: Optional[float] = None
        self._load_lock = threading.Lock()
        self._decodes = threading.BoundedSemaphore(max_decodes)
        self._queue: "queue.Queue[_Job]" = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="explain-worker", daemon=True)
        self._worker.start()
        self.batches_run = 0

    # ---- lazy model -------------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        with self._load_lock:
            if self.model is not None:
                return
            if self.load_error is not None:
                raise ServiceUnavailable(self.load_error)
            try:
                self._load()
            except Exception as exc:  # any failure: remembered, reported as 503 and by /health
                self.load_error = f"the model could not be loaded: {exc}"
                raise ServiceUnavailable(self.load_error) from None

    def _load(self) -> None:
        import torch

        from ..training.rundir import load_run
        from .atlas import open_atlas
        from .explainer import Explainer

        started = time.perf_counter()
        device = "cuda" if self.device_name == "auto" and torch.cuda.is_available() else (
            "cpu" if self.device_name == "auto" else self.device_name)
        model, meta = load_run(self.run, device)
        # Prepared once, not per request: LRP and CRP share one canonized copy with the fast
        # rules in place; Grad-CAM and attention need plain gradients and use the model itself.
        lrp = Explainer(model, "lrp", classes=self.classes)
        self.explainers = {"lrp": lrp, "crp": Explainer(model, "crp", classes=self.classes, share=lrp)}
        if "attention_crp" in self.methods:
            self.explainers["attention_crp"] = Explainer(model, "attention_crp", classes=self.classes, share=lrp)
        self.explainers.update({method: Explainer(model, method, classes=self.classes, copy=False)
                                for method in self.methods if method not in self.explainers})
        self.atlas = open_atlas(self.run.path, model, meta)
        self.device = device
        self.model = model  # last: /health reports weights_loaded only when all is ready
        self.cold_start_seconds = round(time.perf_counter() - started, 3)

    def health(self) -> dict:
        return {"status": "error" if self.load_error else "ok", "error": self.load_error,
                "weights_loaded": self.model is not None,
                "device": getattr(self, "device", None) or "not loaded yet",
                "cold_start_seconds": self.cold_start_seconds, "weights_sha256": self.weights_sha256,
                "arch": self.metadata.arch, "classes": self.classes, "methods": list(self.methods),
                "batches_run": self.batches_run,
                "concept_atlas": None if self.atlas is None else self.atlas.layer}

    # ---- requests ---------------------------------------------------------------------------

    def validate(self, data: bytes, method: str, target, concepts: int, expected_sha256: Optional[str] = None):
        from .files import check_concepts, resolve_target

        if expected_sha256 and expected_sha256.strip().lower() != self.weights_sha256:
            raise HashMismatchError(f"this sidecar explains weights {self.weights_sha256}, not {expected_sha256}")
        if method not in self.methods:
            raise RequestError(f"method {method!r} is not available for {self.metadata.arch}; "
                               f"use one of {list(self.methods)}")
        if len(data) > self.max_upload_bytes:
            raise RequestError(f"upload of {len(data)} bytes exceeds the limit of {self.max_upload_bytes}")
        try:
            index = resolve_target(target, self.classes)
            check_concepts(concepts)
        except ExplainError as exc:
            raise RequestError(str(exc)) from None
        with self._decodes:  # bounded: each decode may hold up to ~100 MB for a large photo
            try:
                rgb = resize_to_spec(decode_image(data, reduce_to=self.spec.size), self.spec)
            except ImageDecodeError as exc:
                raise RequestError(f"image: {exc.reason}") from None
        return rgb, index

    def explain(self, data: bytes, method: str = "lrp", target=None, concepts: int = 8, timeout: float = 600,
                expected_sha256: Optional[str] = None) -> dict:
        """Explain one encoded image; blocks until the worker has answered. Raises RequestError
        for anything the caller got wrong, HashMismatchError when `expected_sha256` is not the
        weights explained here, ServiceUnavailable when the model could not be loaded."""
        if self.load_error is not None:
            raise ServiceUnavailable(self.load_error)
        rgb, index = self.validate(data, method, target, concepts, expected_sha256)
        job = _Job(rgb, method, index, concepts, Future())
        self._queue.put(job)
        return job.future.result(timeout=timeout)

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            # gather what is already waiting with the same method/concepts, up to max_batch
            waiting = []
            while len(batch) < self.max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                (batch if (job.method, job.concepts) == (first.method, first.concepts) else waiting).append(job)
            for job in waiting:
                self._queue.put(job)
            try:
                self._run(batch)
            except Exception as exc:  # the service never dies with a request
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)

    def _run(self, batch: list[_Job]) -> None:
        import numpy as np
        import torch

        from .files import concept_figure, figure_for, summary
        from .render import png_bytes

        self._ensure_loaded()
        x = torch.from_numpy(np.stack([preprocess(job.rgb, self.spec) for job in batch]))
        targets = [job.target for job in batch]  # None: explain the predicted class
        method = batch[0].method
        options = {"concepts": batch[0].concepts} if method in ("crp", "attention_crp") else {}
        explanations = self.explainers[method].explain(x, targets, **options)
        self.batches_run += 1
        for job, explanation in zip(batch, explanations):
            sized = job.rgb  # resized to the model's input at validation
            result = summary(explanation)
            result["weights_sha256"] = self.weights_sha256
            # the same readable figures as the CLI writes: image | overlay, title, colour bar
            result["overlay_png_base64"] = base64.b64encode(png_bytes(figure_for(explanation, sized))).decode()
            for concept, entry in zip(explanation.concepts, result["concepts"]):
                entry["overlay_png_base64"] = base64.b64encode(
                    png_bytes(concept_figure(explanation, concept, sized))).decode()
                if self.atlas is not None and concept.layer == self.atlas.layer:
                    patches = self.atlas.references(concept.channel)
                    entry["reference_patches_png_base64"] = (
                        base64.b64encode(png_bytes(np.hstack(patches))).decode() if patches else None)
            result["batch_size"] = len(batch)
            job.future.set_result(result)
