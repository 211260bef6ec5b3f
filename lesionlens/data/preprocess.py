"""The preprocessing spec and its one implementation (numpy + OpenCV, no torch).

Training, export validation, the ONNX runtime and the explanation sidecar all call
`preprocess`; the spec travels with the model (model.json and ONNX metadata), so a model is
never fed pixels prepared differently from the ones it learned on.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import cv2
import numpy as np

from ..errors import UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INTERPOLATIONS = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "nearest": cv2.INTER_NEAREST,
}
RESIZE_POLICIES = ("shorter_side_center_crop", "stretch", "letterbox")
MAX_SIZE = 4096  # an input side past this is a typo or an attack, not a lesion model


@dataclass(frozen=True)
class PreprocessSpec:
    """How an RGB uint8 image becomes the model's float32 CHW input.

    resize: `shorter_side_center_crop` scales the shorter side to `size` and crops the centre
    (dermoscopy centres the lesion); `stretch` resizes to size x size ignoring aspect;
    `letterbox` fits the longer side and pads with `pad_value`.
    mean/std are in [0, 1] pixel units, per RGB channel.
    """

    size: int = 224
    resize: str = "shorter_side_center_crop"
    interpolation: str = "area"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pad_value: int = 0
    # frame normalisation (`lesionlens revise --method frame`): everything outside a centred
    # circle of this radius (a fraction of the side) painted black, so every photo shows the same
    # dermatoscope frame and a frame can no longer tell one class from another; 0 = off
    frame: float = 0.0
    # frame removal (`lesionlens revise --method unframe`): a dermatoscope frame the dark-field
    # detector finds is filled with the photo's skin before resizing (data/frame_removal.py);
    # photos without one are left as they are
    unframe: bool = False
    version: int = field(default=1)

    def __post_init__(self) -> None:
        # the spec also arrives from model.json and ONNX metadata: check it as data, not trust it
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 8 <= self.size <= MAX_SIZE:
            raise UsageError(f"preprocessing size must be a whole number from 8 to {MAX_SIZE}, got {self.size!r}")
        if self.resize not in RESIZE_POLICIES:
            raise UsageError(f"unknown resize policy {self.resize!r}; use one of {RESIZE_POLICIES}")
        if self.interpolation not in _INTERPOLATIONS:
            raise UsageError(
                f"unknown interpolation {self.interpolation!r}; use one of {sorted(_INTERPOLATIONS)}"
            )
        numbers = [*self.mean, *self.std]
        if (len(self.mean) != 3 or len(self.std) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers)
                or not all(math.isfinite(v) for v in numbers) or min(self.std) <= 0):
            # a NaN mean would turn every image into NaNs and every answer into "not flagged"
            raise UsageError(f"mean and std need three finite numbers each, std > 0; got mean {self.mean!r}, "
                             f"std {self.std!r}")
        if isinstance(self.pad_value, bool) or not isinstance(self.pad_value, int) or not 0 <= self.pad_value <= 255:
            raise UsageError(f"pad_value must be a whole number from 0 to 255, got {self.pad_value!r}")
        if (isinstance(self.frame, bool) or not isinstance(self.frame, (int, float)) or not math.isfinite(self.frame)
                or not (self.frame == 0 or 0.2 <= self.frame <= 0.75)):
            raise UsageError(f"frame must be 0 (off) or a radius from 0.2 to 0.75 of the side, got {self.frame!r}")
        object.__setattr__(self, "frame", float(self.frame))
        if not isinstance(self.unframe, bool):
            raise UsageError(f"unframe must be true or false, got {self.unframe!r}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def input_bounds(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The lowest and highest normalised value per RGB channel (pixels 0 and 1): the box
        LRP's z-box rule needs."""
        return (tuple(-m / s for m, s in zip(self.mean, self.std)),
                tuple((1 - m) / s for m, s in zip(self.mean, self.std)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PreprocessSpec":
        # a field this version does not know is a pixel step it would skip (a lesionlens before
        # `unframe` read a revised model's spec without its frame removal and fed the model other
        # pixels than it was trained on): refused, by name, rather than dropped
        unknown = sorted(k for k in data if k not in cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown preprocessing field(s) {unknown}: written by a newer lesionlens, "
                             f"whose steps this one would skip; update lesionlens to use this model")
        known = dict(data)
        for key in ("mean", "std"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)

    @classmethod
    def from_json(cls, text: str) -> "PreprocessSpec":
        return cls.from_dict(json.loads(text))


def apply_frame(sized: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The spec's normalised frame on a (size, size, 3) uint8 image: black outside a centred
    circle of radius spec.frame * size (a no-op when spec.frame is 0)."""
    if not spec.frame:
        return sized
    size = sized.shape[0]
    yy, xx = np.mgrid[0:size, 0:size]
    outside = (xx + 0.5 - size / 2) ** 2 + (yy + 0.5 - size / 2) ** 2 > (spec.frame * size) ** 2
    out = sized.copy()
    out[outside] = 0
    return out


def remove_frame_if(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The photo with a detected dermatoscope frame filled with its skin when the spec says
    `unframe` (on the whole photo, before any crop: the detector sees the frame's full arc)."""
    if not spec.unframe:
        return rgb
    from .frame_removal import remove_frame

    return remove_frame(rgb)


def resize_to_spec(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Geometric part of preprocessing: RGB uint8 (H, W, 3) -> uint8 (size, size, 3), a
    detected frame removed (spec.unframe) and the spec's frame applied."""
    return apply_frame(_resize(remove_frame_if(rgb, spec), spec), spec)


def finish_sized(sized: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The spec's pixel steps again on an image already at the model's size and edited since
    (the audit's counterfactuals paste a frame onto sized photos): a pasted frame is removed and
    the normalised frame laid over, as they would be on a photo taken with that frame."""
    return apply_frame(remove_frame_if(sized, spec), spec)


def _resize(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected RGB uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    size = spec.size
    interp = _INTERPOLATIONS[spec.interpolation]
    h, w = rgb.shape[:2]
    if spec.resize == "stretch":
        return cv2.resize(rgb, (size, size), interpolation=interp)
    if spec.resize == "letterbox":
        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        resized = cv2.resize(rgb, (nw, nh), interpolation=interp)
        out = np.full((size, size, 3), spec.pad_value, dtype=np.uint8)
        top, left = (size - nh) // 2, (size - nw) // 2
        out[top : top + nh, left : left + nw] = resized
        return out
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        rgb = cv2.resize(rgb, (nw, nh), interpolation=interp)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(rgb[top : top + size, left : left + size])


def normalize(rgb_sized: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Photometric part: uint8 (S, S, 3) -> float32 (3, S, S), (x/255 - mean) / std."""
    scale = np.asarray(spec.std, dtype=np.float32) * 255.0
    shift = np.asarray(spec.mean, dtype=np.float32) * 255.0
    chw = rgb_sized.astype(np.float32).transpose(2, 0, 1)
    return np.ascontiguousarray((chw - shift[:, None, None]) / scale[:, None, None])


def preprocess(rgb_uint8: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (3, size, size), ready for the model."""
    return normalize(resize_to_spec(rgb_uint8, spec), spec)


def decode_for(source, spec: PreprocessSpec) -> np.ndarray:
    """Decode an image for a model with this spec: large JPEGs may be decoded at reduced scale,
    never below the spec's size (see decode_image's `reduce_to`). Every path that feeds a model
    (training, export validation, the runtime, the sidecar) decodes through here, so a model
    always sees the same pixels for the same file."""
    from .decode import decode_image

    return decode_image(source, reduce_to=spec.size)
