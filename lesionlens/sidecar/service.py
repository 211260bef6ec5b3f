"""The explanation sidecar's engine, usable without HTTP (the demo and batch jobs call it).

Production classifies with the ONNX model; the sidecar explains the flagged cases with the
PyTorch weights of the same model. At start-up it validates the whole run against the ONNX
model (validation.py): an explanation of another model is worse than none. Torch and the
weights load lazily on the first request; if that fails, every request is answered
"unavailable" with the reason (HTTP 503) and /health says so. Each answer carries the weights
hash it explained, and a caller may insist on one (`expected_sha256`).

Decoding is bounded process-wide (lesionlens.data.decode: large images one or two at a time,
at reduced scale, the pixel cap checked from the header), so a burst of large or hostile
uploads cannot exhaust memory; explanations run on one worker thread that batches concurrent
requests.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..data.decode import decode_image
from ..data.preprocess import preprocess, resize_to_spec
from ..errors import ExplainError, HashMismatchError, ImageDecodeError, LesionlensError, RequestError
from ..training.architectures import get_spec
from .validation import validate_run_for

DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024


class ServiceUnavailable(LesionlensError, RuntimeError):
    """The model could not be loaded; the sidecar answers 503 until restarted."""


@dataclass
class _Job:
    rgb: object
    method: str
    target: Optional[int]
    concepts: int
    concept_choice: Optional[str]  # None: the architecture's
    future: Future


class ExplanationService:
    def __init__(self, model_path: Path, run: Path, device: str = "auto", max_batch: int = 8,
                 max_upload_bytes: int = DEFAULT_MAX_UPLOAD):
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

        from ..explain.atlas import open_atlas
        from ..explain.explainer import Explainer
        from ..training.rundir import load_run

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

    def validate(self, data: bytes, method: str, target, concepts: int, expected_sha256: Optional[str] = None,
                 concept_choice: Optional[str] = None):
        from ..explain.concept_choice import CHOICES
        from ..explain.files import check_concepts, resolve_target

        if expected_sha256 and expected_sha256.strip().lower() != self.weights_sha256:
            raise HashMismatchError(f"this sidecar explains weights {self.weights_sha256}, not {expected_sha256}")
        if method not in self.methods:
            raise RequestError(f"method {method!r} is not available for {self.metadata.arch}; "
                               f"use one of {list(self.methods)}")
        if len(data) > self.max_upload_bytes:
            raise RequestError(f"upload of {len(data)} bytes exceeds the limit of {self.max_upload_bytes}")
        if concept_choice is not None and concept_choice not in CHOICES:
            raise RequestError(f"unknown concept_choice {concept_choice!r}; use one of {list(CHOICES)}")
        try:
            index = resolve_target(target, self.classes)
            check_concepts(concepts)
        except ExplainError as exc:
            raise RequestError(str(exc)) from None
        try:  # decode_image bounds how many large images are decoded at once, process-wide
            rgb = resize_to_spec(decode_image(data, reduce_to=self.spec.size), self.spec)
        except ImageDecodeError as exc:
            raise RequestError(f"image: {exc.reason}") from None
        return rgb, index

    def explain(self, data: bytes, method: str = "lrp", target=None, concepts: int = 8, timeout: float = 600,
                expected_sha256: Optional[str] = None, concept_choice: Optional[str] = None) -> dict:
        """Explain one encoded image; blocks until the worker has answered. Raises RequestError
        for anything the caller got wrong, HashMismatchError when `expected_sha256` is not the
        weights explained here, ServiceUnavailable when the model could not be loaded.
        concept_choice: CRP's (top, distinct); None for the architecture's."""
        if self.load_error is not None:
            raise ServiceUnavailable(self.load_error)
        rgb, index = self.validate(data, method, target, concepts, expected_sha256, concept_choice)
        job = _Job(rgb, method, index, concepts, concept_choice, Future())
        self._queue.put(job)
        return job.future.result(timeout=timeout)

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            # gather what is already waiting with the same method and concepts, up to max_batch
            waiting = []
            while len(batch) < self.max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                same = (job.method, job.concepts, job.concept_choice) == \
                    (first.method, first.concepts, first.concept_choice)
                (batch if same else waiting).append(job)
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

        from .answers import answer

        self._ensure_loaded()
        x = torch.from_numpy(np.stack([preprocess(job.rgb, self.spec) for job in batch]))
        targets = [job.target for job in batch]  # None: explain the predicted class
        method = batch[0].method
        options = {"concepts": batch[0].concepts, "concept_choice": batch[0].concept_choice} \
            if method in ("crp", "attention_crp") else {}
        explanations = self.explainers[method].explain(x, targets, **options)
        self.batches_run += 1
        for job, explanation in zip(batch, explanations):
            # job.rgb was resized to the model's input at validation
            result = answer(explanation, job.rgb, self.weights_sha256, self.atlas)
            result["batch_size"] = len(batch)
            job.future.set_result(result)
