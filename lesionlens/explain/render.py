"""Heatmap rendering: a diverging colour map symmetric around zero, blended over the image."""

from __future__ import annotations

import cv2
import numpy as np


def heatmap_rgb(heatmap: np.ndarray) -> np.ndarray:
    """Signed (H, W) -> RGB uint8: red positive, blue negative, white zero; scaled by the
    largest |value| so zero is always the middle of the map."""
    import matplotlib

    scale = float(np.abs(heatmap).max()) or 1.0
    normalised = (heatmap / scale + 1) / 2
    return (matplotlib.colormaps["bwr"](normalised)[..., :3] * 255).astype(np.uint8)


def overlay(rgb: np.ndarray, heatmap: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend the coloured heatmap over the (resized) image; transparent where relevance is ~0."""
    colour = heatmap_rgb(heatmap)
    base = cv2.resize(rgb, (heatmap.shape[1], heatmap.shape[0]), interpolation=cv2.INTER_AREA)
    strength = np.abs(heatmap) / (np.abs(heatmap).max() or 1.0)
    weight = (alpha * np.sqrt(strength))[..., None]
    return (base * (1 - weight) + colour * weight).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("could not encode PNG")
    return buf.tobytes()
