"""Dermoscopy-safe augmentation on RGB uint8 arrays (numpy/OpenCV, like preprocessing).

A dermoscopy image has no "up": flips and 90-degree rotations are free. Colour is diagnostic
(blue-grey veil, regression white), so colour jitter stays small, and crops keep most of the
field so the lesion is not cut away.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..data.preprocess import apply_frame, PreprocessSpec, _INTERPOLATIONS, remove_frame_if


@dataclass(frozen=True)
class AugmentConfig:
    crop_scale: tuple[float, float] = (0.6, 1.0)  # fraction of the image area kept
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue_degrees: float = 4.0


def random_resized_crop(rgb: np.ndarray, size: int, rng: np.random.Generator, cfg: AugmentConfig,
                        interpolation: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(*cfg.crop_scale)
        ratio = np.exp(rng.uniform(np.log(cfg.crop_ratio[0]), np.log(cfg.crop_ratio[1])))
        cw, ch = int(round(np.sqrt(target * ratio))), int(round(np.sqrt(target / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            break
    else:  # fall back to the central square
        ch = cw = min(h, w)
        top, left = (h - ch) // 2, (w - cw) // 2
    return cv2.resize(rgb[top : top + ch, left : left + cw], (size, size), interpolation=interpolation)


def colour_jitter(rgb: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    img = rgb.astype(np.float32)
    img *= 1 + rng.uniform(-cfg.brightness, cfg.brightness)
    mean = img.mean()
    img = (img - mean) * (1 + rng.uniform(-cfg.contrast, cfg.contrast)) + mean
    gray = img @ np.array([0.299, 0.587, 0.114], np.float32)
    img = gray[..., None] + (img - gray[..., None]) * (1 + rng.uniform(-cfg.saturation, cfg.saturation))
    img = np.clip(img, 0, 255).astype(np.uint8)
    if cfg.hue_degrees:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        shift = int(round(rng.uniform(-cfg.hue_degrees, cfg.hue_degrees) / 2))  # OpenCV hue is 0..179
        hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return img


def augment(rgb: np.ndarray, spec: PreprocessSpec, rng: np.random.Generator,
            cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """RGB uint8 of any size -> augmented RGB uint8 (spec.size, spec.size, 3)."""
    # a detected frame removed first, on the whole image, as resize_to_spec does at inference
    out = random_resized_crop(remove_frame_if(rgb, spec), spec.size, rng, cfg, _INTERPOLATIONS[spec.interpolation])
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rng.random() < 0.5:
        out = out[::-1]
    out = np.rot90(out, int(rng.integers(4)))
    # the spec's normalised frame last: a training image shows exactly the frame inference adds
    return apply_frame(colour_jitter(np.ascontiguousarray(out), rng, cfg), spec)
