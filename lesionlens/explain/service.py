"""The explanation sidecar's engine, usable without HTTP (the demo and batch jobs call it).

Production classifies with the ONNX model; the sidecar explains the flagged cases with the
PyTorch weights of the same model. It refuses weights whose sha256 differs from the ONNX
model's `weights_sha256` (an explanation of another model is worse than none), loads torch and
the weights lazily on the first request, prepares the canonizers once, and batches concurrent
requests on the device through one worker thread.
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

from ..data.decode import ImageDecodeError, decode_image
from ..data.preprocess import preprocess, resize_to_spec
from ..runtime.metadata import ModelMetadata

METHODS = ("lrp", "crp", "gradcam", "attention")
DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024


class HashMismatchError(RuntimeError):
    """The run's weights are not the weights the ONNX model was exported from."""


class RequestError(ValueError):
    """A request the service cannot answer (bad image, unknown method, target out of range)."""


def open_atlas(run: Path, model, meta: dict):
    """The run's concept atlas, or None when there is none (or it is for other weights)."""
    from .atlas import AtlasError, ConceptAtlas

    try:
        return ConceptAtlas(run, model, meta)
    except AtlasError:
        return None


def onnx_metadata(model_path: Path) -> ModelMetadata:
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    return ModelMetadata.from_props({p.key: p.value for p in model.metadata_props}, str(model_path))


@dataclass
class _Job:
    rgb: object
    method: str
    target: Optional[int]
    concepts: int
    future: Future


class ExplanationService:
    def __init__(self, model_path: Path, run: Path, device: str = "auto", max_batch: int = 8,
                 max_upload_bytes: int = DEFAULT_MAX_UPLOAD):
        from ..training.checkpoint import sha256_file
        from ..training.rundir import MODEL_FILE, read_metadata

        self.model_path, self.run = Path(model_path), Path(run)
        if not self.model_path.is_file():
            raise FileNotFoundError(f"{self.model_path}: ONNX model not found")
        self.metadata = onnx_metadata(self.model_path)
        self.run_meta = read_metadata(self.run)
        weights = self.run / MODEL_FILE
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: weights not found")
        self.weights_sha256 = sha256_file(weights)
        if self.weights_sha256 != self.metadata.weights_sha256:
            raise HashMismatchError(
                f"{weights} has sha256 {self.weights_sha256}, but {self.model_path} was exported from weights "
                f"with sha256 {self.metadata.weights_sha256}: refusing to explain a different model")
        self.classes = self.metadata.classes
        self.spec = self.metadata.preprocessing
        self.device_name, self.max_batch, self.max_upload_bytes = device, max_batch, max_upload_bytes
        self.model = None
        self.lrp_model = None  # the fast-LRP copy, for lrp and crp
        self.atlas = None
        self.cold_start_seconds: Optional[float] = None
        self._load_lock = threading.Lock()
        self._queue: "queue.Queue[_Job]" = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="explain-worker", daemon=True)
        self._worker.start()
        self.batches_run = 0

    # ---- lazy model -------------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        import copy

        import torch

        from ..training.rundir import load_run
        from .fast_lrp import fast_lrp

        with self._load_lock:
            if self.model is not None:
                return
            started = time.perf_counter()
            device = "cuda" if self.device_name == "auto" and torch.cuda.is_available() else (
                "cpu" if self.device_name == "auto" else self.device_name)
            model, meta = load_run(self.run, device)
            # Prepared once, not per request: LRP and CRP run on a copy held canonized with the
            # fast rules in place. Grad-CAM and attention need plain gradients, so they use the
            # untouched model.
            self._fast_context = fast_lrp(copy.deepcopy(model))
            self.lrp_model = self._fast_context.__enter__()
            self.atlas = open_atlas(self.run, model, meta)
            self.device = device
            self.model = model  # last: /health reports weights_loaded only when all is ready
            self.cold_start_seconds = round(time.perf_counter() - started, 3)

    def health(self) -> dict:
        return {"status": "ok", "weights_loaded": self.model is not None,
                "device": getattr(self, "device", None) or "not loaded yet",
                "cold_start_seconds": self.cold_start_seconds, "weights_sha256": self.weights_sha256,
                "arch": self.metadata.arch, "classes": self.classes, "batches_run": self.batches_run,
                "concept_atlas": None if self.atlas is None else self.atlas.layer}

    # ---- requests ---------------------------------------------------------------------------

    def validate(self, data: bytes, method: str, target, concepts: int):
        if method not in METHODS:
            raise RequestError(f"unknown method {method!r}; use one of {list(METHODS)}")
        if method == "attention" and self.metadata.arch != "attention_resnet50":
            raise RequestError(f"method 'attention' needs the attention_resnet50 architecture, not {self.metadata.arch}")
        if len(data) > self.max_upload_bytes:
            raise RequestError(f"upload of {len(data)} bytes exceeds the limit of {self.max_upload_bytes}")
        from .files import resolve_target

        try:
            index = resolve_target(target, self.classes)
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        if not 1 <= concepts <= 64:
            raise RequestError("concepts must be between 1 and 64")
        try:
            rgb = decode_image(data)
        except ImageDecodeError as exc:
            raise RequestError(f"image: {exc.reason}") from None
        return rgb, index

    def explain(self, data: bytes, method: str = "lrp", target=None, concepts: int = 8, timeout: float = 600) -> dict:
        """Explain one encoded image; blocks until the worker has answered. Raises RequestError
        for anything the caller got wrong."""
        rgb, index = self.validate(data, method, target, concepts)
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

        from .api import explain_batch
        from .files import summary
        from .render import overlay, png_bytes

        self._ensure_loaded()
        x = torch.from_numpy(np.stack([preprocess(job.rgb, self.spec) for job in batch]))
        targets = [job.target for job in batch]  # None: explain the predicted class
        method = batch[0].method
        model = self.lrp_model if method in ("lrp", "crp") else self.model
        options = {"registered": True} if method in ("lrp", "crp") else {}
        if method == "crp":
            options["concepts"] = batch[0].concepts
        explanations = explain_batch(model, x, targets, method, self.classes, **options)
        self.batches_run += 1
        for job, explanation in zip(batch, explanations):
            sized = resize_to_spec(job.rgb, self.spec)
            result = summary(explanation)
            result["overlay_png_base64"] = base64.b64encode(png_bytes(overlay(sized, explanation.heatmap))).decode()
            for concept, entry in zip(explanation.concepts, result["concepts"]):
                entry["overlay_png_base64"] = base64.b64encode(
                    png_bytes(overlay(sized, concept.heatmap.cpu().numpy()))).decode()
                if self.atlas is not None and concept.layer == self.atlas.layer:
                    patches = self.atlas.references(concept.channel)
                    entry["reference_patches_png_base64"] = (
                        base64.b64encode(png_bytes(np.hstack(patches))).decode() if patches else None)
            result["batch_size"] = len(batch)
            job.future.set_result(result)
