"""The production classifier: an exported ONNX model, onnxruntime, numpy and OpenCV. No torch.

    from lesionlens.runtime import Classifier
    clf = Classifier("model.onnx")              # providers="auto": TensorRT > CUDA > CPU
    for p in clf.predict(["a.jpg", b"...", rgb_array]):
        print(p.source, p.label, p.probabilities, p.flagged, p.error)

One Classifier (one ORT session) is safe to share between threads: `predict` keeps no state
between calls, and onnxruntime's `run` is thread-safe.
"""

from __future__ import annotations

import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from ..errors import ImageDecodeError, display_path
from ..data.preprocess import decode_for, normalize, resize_to_spec
from .metadata import MetadataError, ModelMetadata
from .providers import CPU, provider_list

log = logging.getLogger("lesionlens")
ImageInput = Union[str, os.PathLike, bytes, bytearray, np.ndarray]
NON_FINITE = "the model gave non-finite probabilities (NaN or infinity) for this image: no answer"


class ProviderFallbackWarning(RuntimeWarning):
    """A GPU provider that was asked for explicitly is not the one running."""


@dataclass
class Prediction:
    source: str
    label: Optional[str] = None
    probabilities: dict[str, float] = field(default_factory=dict)
    flagged: bool = False
    flag_reason: str = ""  # "positive", "uncertain" or "positive+uncertain"
    error: Optional[str] = None  # why this input could not be classified

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return {"source": self.source, "label": self.label, "probabilities": self.probabilities,
                "flagged": self.flagged, "flag_reason": self.flag_reason, "error": self.error}


def _describe(image: ImageInput, index: int) -> str:
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    if isinstance(image, np.ndarray):
        return f"<array #{index}>"
    return f"<{len(image)} bytes #{index}>"


class Classifier:
    def __init__(self, model_path: Union[str, Path], providers: str = "auto", max_batch: int = 32,
                 threads: Optional[int] = None):
        """Load `model_path` (exported by `lesionlens export`). `providers`: auto, tensorrt,
        cuda or cpu; `classifier.provider` tells which one runs. `threads`: ORT intra-op
        threads (default: all cores)."""
        import onnxruntime as ort

        self.path = Path(model_path)
        if not self.path.is_file():
            raise MetadataError(f"{display_path(self.path)}: model file not found")
        chosen, notes = provider_list(providers)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=chosen)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            raise MetadataError(f"{display_path(self.path)}: onnxruntime cannot load this model ({exc})") from None
        self.provider = self.session.get_providers()[0]
        if providers in ("cuda", "tensorrt") and self.provider == CPU:
            reason = "; ".join(notes) or "onnxruntime fell back"
            message = f"{providers} requested, running on CPU instead: {reason}"
            warnings.warn(message, ProviderFallbackWarning, stacklevel=2)
            log.warning(message)
        self.metadata = ModelMetadata.from_props(self.session.get_modelmeta().custom_metadata_map,
                                                 display_path(self.path))
        self.metadata.check_graph(self.session.get_inputs(), self.session.get_outputs(), display_path(self.path))
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        self.uint8_input = graph_input.type == "tensor(uint8)"
        self.max_batch = max(1, int(max_batch))
        self._decode_workers = min(8, os.cpu_count() or 1)

    @property
    def classes(self) -> list[str]:
        return self.metadata.classes

    @property
    def spec(self):
        return self.metadata.preprocessing

    # ---- arrays ---------------------------------------------------------------------------

    def prepare(self, image: ImageInput) -> np.ndarray:
        """Decode (path / bytes) or take an RGB uint8 array, and prepare it for this graph:
        uint8 (S, S, 3) for the uint8 variant, float32 (3, S, S) otherwise."""
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ImageDecodeError("<array>", f"expected an RGB uint8 array (H, W, 3), got {image.dtype} {image.shape}")
            rgb = image
        else:
            rgb = decode_for(image, self.spec)
        sized = resize_to_spec(rgb, self.spec)
        return sized if self.uint8_input else normalize(sized, self.spec)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits, probs) for a prepared batch. On a GPU provider the batch is bound with
        IOBinding: copied to the device once, outputs copied back once."""
        if self.provider == CPU:
            logits, probs = self.session.run(["logits", "probs"], {self.input_name: batch})
            return logits, probs
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, np.ascontiguousarray(batch))
        binding.bind_output("logits")
        binding.bind_output("probs")
        self.session.run_with_iobinding(binding)
        logits, probs = binding.copy_outputs_to_cpu()
        return logits, probs

    # ---- images ---------------------------------------------------------------------------

    def _prepare_safe(self, image: ImageInput):
        try:
            return self.prepare(image), None
        except ImageDecodeError as exc:
            return None, exc.reason
        except OSError as exc:  # unreadable path: permissions, I/O errors
            return None, f"cannot read file ({exc.strerror or exc})"

    def predict(self, images: Iterable[ImageInput], batch_size: Optional[int] = None,
                on_batch=None) -> list[Prediction]:
        """One Prediction per input, in order. A bad input (unreadable, not an image, too
        small, a decompression bomb, a wrong array) gets `error` set; the rest are classified.
        `on_batch(n)` is called after each batch of n inputs (progress bars)."""
        images = list(images)
        size = batch_size or self.max_batch
        results: list[Prediction] = []
        with ThreadPoolExecutor(self._decode_workers) as pool:
            for start in range(0, len(images), size):
                chunk = images[start : start + size]
                prepared = list(pool.map(self._prepare_safe, chunk))
                good = [i for i, (arr, _) in enumerate(prepared) if arr is not None]
                probs = np.zeros((0, len(self.classes)), np.float32)
                if good:
                    _, probs = self.run(np.stack([prepared[i][0] for i in good]))
                results.extend(self._predictions(chunk, start, prepared, good, probs))
                if on_batch is not None:
                    on_batch(len(chunk))
        return results

    def _predictions(self, chunk: Sequence, start: int, prepared, good: list[int], probs: np.ndarray):
        reasons = self.metadata.flag_policy.reasons(probs) if len(good) else []
        row_of = {i: k for k, i in enumerate(good)}
        for i, image in enumerate(chunk):
            source = _describe(image, start + i)
            if i not in row_of:
                yield Prediction(source, error=prepared[i][1])
                continue
            p = probs[row_of[i]]
            if not np.isfinite(p).all():
                # never "not flagged" for an answer the model could not compute
                yield Prediction(source, error=NON_FINITE)
                continue
            yield Prediction(
                source, label=self.classes[int(p.argmax())],
                probabilities={c: float(v) for c, v in zip(self.classes, p)},
                flagged=bool(reasons[row_of[i]]), flag_reason=reasons[row_of[i]],
            )

    def predict_one(self, image: ImageInput) -> Prediction:
        """Like predict([image])[0], but raises ImageDecodeError for a bad input."""
        prediction = self.predict([image])[0]
        if prediction.error:
            raise ImageDecodeError(prediction.source, prediction.error)
        return prediction
