"""Dark frames as real dermatoscope photos show them, and the look-alikes that are not frames.

A dermatoscope's round field of view leaves the rest of the photo dark. How much of it, and how
dark, depends on the device and on how the photo was cropped, so the generator draws several
kinds (FRAME_STYLES), and, to keep a detector honest, dark things that are not a frame
(LOOKALIKES). Each function paints a float32 RGB image (H, W, 3) in place; a frame returns its
uint8 mask (255 = frame).

Radii are fractions of the shorter side, so a 4:3 photo whose field is as tall as the image gets
dark bands left and right, as HAM10000-style 600x450 photos do.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UsageError

FRAME_STYLES = ("circle", "corners", "bands", "grey", "soft")
LOOKALIKES = ("dark_skin", "corner_shadow", "gradient", "vignetting", "letterbox")


def _distance(h: int, w: int, cx: float, cy: float, stretch: float = 1.0) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.sqrt(((xx + 0.5 - cx) / stretch) ** 2 + (yy + 0.5 - cy) ** 2)


def _field_level(img: np.ndarray) -> float:
    """The brightness of the photo's middle, which a surround is drawn relative to."""
    h, w = img.shape[:2]
    side = min(h, w)
    middle = img[h // 2 - side // 4: h // 2 + side // 4, w // 2 - side // 4: w // 2 + side // 4]
    return float(np.median(middle.mean(axis=2)))


def draw_frame(rng: np.random.Generator, img: np.ndarray, style: str) -> np.ndarray:
    """Paint one frame of `style` onto `img`; returns its mask (uint8, 255 = frame)."""
    if style not in FRAME_STYLES:
        raise UsageError(f"unknown frame style {style!r}; use one of {FRAME_STYLES}")
    h, w = img.shape[:2]
    side = min(h, w)
    cx, cy = w / 2 + rng.normal(0, side * 0.02), h / 2 + rng.normal(0, side * 0.02)
    edge = side * 0.03  # the width of the field's edge (lens blur)
    stretch, surround, rim = 1.0, 8.0, 0.0
    depth = 0.92
    if style == "circle":  # the whole field inside the photo: black all round
        radius = rng.uniform(0.44, 0.49) * side
    elif style == "corners":  # the field larger than the photo: only the four corners dark
        radius = rng.uniform(0.56, 0.64) * side
    elif style == "bands":  # the field as tall as the photo: on a 4:3 photo, bands left and right
        radius = rng.uniform(0.5, 0.54) * side
    elif style == "grey":  # a grey surround, about a third of the field's brightness
        radius = rng.uniform(0.42, 0.5) * side
        surround = _field_level(img) * rng.uniform(0.25, 0.4)
        depth = 1.0
    else:  # soft: off-centre, slightly oval, a blurred edge and a bright rim
        cx += rng.normal(0, side * 0.06)
        cy += rng.normal(0, side * 0.06)
        radius = rng.uniform(0.42, 0.5) * side
        stretch = rng.uniform(0.92, 1.08)
        edge = side * rng.uniform(0.06, 0.1)
        rim = rng.uniform(0.1, 0.25)
    d = _distance(h, w, cx, cy, stretch)
    dark = np.clip((d - radius) / edge, 0, 1)
    if rim:  # a bright halo just inside the edge, as light scatters off the contact plate
        halo = np.exp(-((d - radius + edge) / (edge * 0.6)) ** 2) * rim
        img *= (1 + halo)[:, :, None]
    img[:] = img * (1 - depth * dark[:, :, None]) + surround * dark[:, :, None]
    return np.where(dark > 0.1, 255, 0).astype(np.uint8)


def draw_lookalike(rng: np.random.Generator, img: np.ndarray, kind: str) -> None:
    """Paint a dark thing that is not a dermatoscope frame onto `img` (no mask: no artifact)."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "dark_skin":  # deeply pigmented skin: the whole photo dark, no frame
        img *= rng.uniform(0.35, 0.55)
    elif kind == "corner_shadow":  # a shadow of the device or a finger over one corner
        corner = (w * rng.integers(2), h * rng.integers(2))
        d = np.sqrt((xx - corner[0]) ** 2 + (yy - corner[1]) ** 2) / min(h, w)
        reach = rng.uniform(0.25, 0.45)
        shade = np.clip(1 - d / reach, 0, 1) ** 0.7 * rng.uniform(0.6, 0.85)
        img *= (1 - shade)[:, :, None]
    elif kind == "gradient":  # light from one side: one edge of the photo much darker
        angle = rng.uniform(0, 2 * math.pi)
        t = ((xx / w - 0.5) * math.cos(angle) + (yy / h - 0.5) * math.sin(angle)) + 0.5
        low = rng.uniform(0.35, 0.55)
        img *= (low + (1 - low) * np.clip(t, 0, 1))[:, :, None]
    elif kind == "vignetting":  # lens fall-off: corners at about 70% of the centre
        d = np.sqrt((xx + 0.5 - w / 2) ** 2 + (yy + 0.5 - h / 2) ** 2) / math.hypot(w / 2, h / 2)
        corner = rng.uniform(0.65, 0.75)
        img *= (1 - (1 - corner) * d ** 2)[:, :, None]
    elif kind == "letterbox":  # a widescreen still: black bars above and below, straight edges
        bar = int(round(h * rng.uniform(0.08, 0.14)))
        img[:bar] = rng.uniform(4, 14)
        img[h - bar:] = rng.uniform(4, 14)
    else:
        raise UsageError(f"unknown look-alike {kind!r}; use one of {LOOKALIKES}")


def parse_aspect(text: str) -> tuple[int, int]:
    """'4:3' -> (4, 3): width to height, landscape or portrait, at most 3:1 either way."""
    try:
        a, b = (int(part) for part in str(text).split(":"))
    except ValueError:
        raise UsageError(f"--aspect must look like 4:3 (width:height), got {text!r}") from None
    if a <= 0 or b <= 0 or max(a, b) > 3 * min(a, b):
        raise UsageError(f"--aspect {text!r}: both sides positive, the longer at most 3x the shorter")
    return a, b


def photo_shape(size: int, aspect: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of a photo whose shorter side is `size`."""
    a, b = aspect
    if a >= b:
        return size, int(round(size * a / b))
    return int(round(size * b / a)), size
