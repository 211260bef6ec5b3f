"""Heatmap rendering: a diverging colour map symmetric around zero, blended over the image."""

from __future__ import annotations

import cv2
import numpy as np


CLIP_PERCENTILE = 99.5
FADE = 0.1  # overlay: below this share of the colour scale the tint fades out (see overlay)
# methods whose maps are upsampled from a coarse map and never negative: drawn as they are
# (one-sided bar, no smoothing over the input grid)
COARSE_METHODS = ("gradcam", "attention")


def display_map(heatmap: np.ndarray, grid: int = None) -> np.ndarray:
    """The map as every figure draws it: smoothed with a Gaussian of sigma = grid / 2 px, where
    `grid` is the stride of the network's first layers (input_grid.stem_stride: 4 px on the
    ResNets, 2 on EfficientNet). Below that grid an LRP map's pattern is the input rule's, not
    the model's: the flat rule stamps a 7x7 square under each ResNet stem unit that won its
    max-pool window, and EfficientNet's stride-2 stem leaves a dot every 2 px. Smoothing over
    the grid turns those into the blobs the evidence forms; measured on the main job's held-out
    melanomas, it keeps the share on the melanoma features (docs/explanation-choice.md). The
    kernel sums to 1, so the map's total is kept (up to what leaves at the border: reflected).
    No grid (None, 0, 1): the map unchanged. Arrays and numbers (JSON, explain-eval's other
    scores) are always the raw map's."""
    if not grid or grid < 2:
        return heatmap
    sigma = grid / 2
    return cv2.GaussianBlur(np.asarray(heatmap, np.float32), (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def smoothing_note(grid: int = None) -> str:
    """The colour bar's words for display_map, or "" when the map is drawn as computed."""
    if not grid or grid < 2:
        return ""
    return f"smoothed over the model's {grid}-px input grid (sigma {grid / 2:g} px); the numbers are the raw map's"


def colour_scale(heatmap: np.ndarray) -> float:
    """The |value| that gets full colour: the 99.5th percentile of |map| (a few extreme pixels
    would otherwise wash out everything else; those beyond it are drawn at full colour)."""
    magnitude = np.abs(heatmap)
    return float(np.percentile(magnitude, CLIP_PERCENTILE)) or float(magnitude.max()) or 1.0


def heatmap_rgb(heatmap: np.ndarray, scale: float = None) -> np.ndarray:
    """Signed (H, W) -> RGB uint8: red positive, blue negative, white zero; symmetric around
    zero, so zero is always the middle of the map."""
    import matplotlib

    scale = scale or colour_scale(heatmap)
    normalised = (np.clip(heatmap / scale, -1, 1) + 1) / 2
    return (matplotlib.colormaps["bwr"](normalised)[..., :3] * 255).astype(np.uint8)


def overlay(rgb: np.ndarray, heatmap: np.ndarray, alpha: float = 0.55, scale: float = None) -> np.ndarray:
    """Blend the coloured heatmap over the (resized) image; transparent where relevance is ~0."""
    scale = scale or colour_scale(heatmap)
    colour = heatmap_rgb(heatmap, scale)
    base = cv2.resize(rgb, (heatmap.shape[1], heatmap.shape[0]), interpolation=cv2.INTER_AREA)
    strength = np.clip(np.abs(heatmap) / scale, 0, 1)
    # sqrt: faint evidence stays visible; faded out below FADE of the scale, so the near-zero
    # background is not tinted (the colour there is white): a smooth map's zero crossings would
    # otherwise show as thin dark lines where the tint stops
    weight = (alpha * np.sqrt(strength) * np.minimum(1.0, strength / FADE))[..., None]
    return (base * (1 - weight) + colour * weight).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("could not encode PNG")
    return buf.tobytes()


READABLE = 384  # px: a 64-224 px model input, upscaled so a person can see its structure


def _upscale(image: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC if image.ndim == 2 else cv2.INTER_LINEAR)


def _text(canvas: np.ndarray, text: str, x: int, y: int, scale: float = 0.45) -> None:
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 1, cv2.LINE_AA)


def clipped_share(heatmap: np.ndarray, scale: float) -> float:
    """The share of the map's pixels beyond the colour scale (drawn at full colour)."""
    return float((np.abs(heatmap) > scale).mean())


def colour_bar(width: int, scale: float, target_label: str, signed: bool = True,
               clipped: float = None, smoothed: str = "") -> np.ndarray:
    """A strip saying what the colours mean: blue = against, white = 0, red = for the class,
    with the value at each end (relevance units; full colour from the 99.5th percentile of |map|).
    A map that is never negative (Grad-CAM, attention) gets only the white-to-red half, and no
    words about evidence against. With `clipped`, a line says how much of the map lies beyond
    the scale: the colour scale is robust (a percentile, so one extreme pixel does not wash the
    map out), and the bar says what that cost; with `smoothed` (smoothing_note), a line says the
    map was smoothed over the input grid."""
    import matplotlib

    strip = np.full((58 + (clipped is not None) * 14 + bool(smoothed) * 14, width, 3), 255, np.uint8)
    ramp = matplotlib.colormaps["bwr"](np.linspace(0, 1, width - 40))[..., :3]
    strip[6:22, 20:width - 20] = (ramp[None] * 255).astype(np.uint8)
    _text(strip, "0", width // 2 - 4, 38)
    _text(strip, f">= +{scale:.3g}", width - 100, 38)
    if signed:
        _text(strip, f"<= -{scale:.3g}", 20, 38)
        _text(strip, f"blue = evidence against '{target_label}'   red = evidence for it", 20, 53, 0.4)
    else:
        strip[6:22, 20:width // 2] = 255
        _text(strip, "white = 0 (never negative)   red = its highest values", width // 2 - 4, 53, 0.4)
    if clipped is not None:
        _text(strip, f"full colour from the {CLIP_PERCENTILE:g}th percentile of |map|; {clipped:.1%} of the pixels lie "
              "beyond it",
              20, 67, 0.4)
    if smoothed:
        _text(strip, smoothed, 20, strip.shape[0] - 5, 0.4)
    return strip


def figure(rgb: np.ndarray, heatmap: np.ndarray, *, title: str, target_label: str,
           notes: tuple[str, ...] = (), size: int = READABLE, signed: bool = True, grid: int = None) -> np.ndarray:
    """The picture a person reads: the image and the overlay side by side at `size` px, a title,
    optional notes, and the colour bar (for signed maps; a non-negative map such as Grad-CAM or
    attention gets a one-sided bar). `grid`: the model's input grid, over which the map is
    smoothed for drawing (display_map; the bar says so)."""
    import textwrap

    heatmap = display_map(heatmap, grid)
    image = _upscale(cv2.resize(rgb, heatmap.shape[::-1], interpolation=cv2.INTER_AREA), size)
    scale = colour_scale(heatmap)
    mapped = overlay(image, _upscale(heatmap.astype(np.float32), size), scale=scale)
    # a note wider than the figure is wrapped, not cut (Hershey at 0.4: about 7 px a character)
    notes = [line for note in notes for line in textwrap.wrap(note, max(20, (2 * size + 8 - 12) // 7))]
    top = np.full((24 + 16 * len(notes), 2 * size + 8, 3), 255, np.uint8)
    _text(top, title, 6, 17, 0.5)
    for i, note in enumerate(notes):
        _text(top, note, 6, 34 + 16 * i, 0.4)
    body = np.full((size, 2 * size + 8, 3), 255, np.uint8)
    body[:, :size], body[:, size + 8:] = image, mapped
    bar = colour_bar(2 * size + 8, scale, target_label, signed, clipped_share(heatmap, scale), smoothing_note(grid))
    return np.vstack([top, body, bar])
