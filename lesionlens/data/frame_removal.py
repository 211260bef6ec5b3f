"""Frame removal: a dermatoscope frame the dark-field detector finds is filled with the photo's
own skin before the photo is resized for the model (PreprocessSpec.unframe, `lesionlens revise
--method unframe`). A frame then looks the same in every photo, whatever its style (a black
circle, dark corners, side bands, a grey or soft surround): not there. Unlike frame normalisation
(PreprocessSpec.frame), a photo without a frame is left as it is, so no lesion loses its border.

A bright rim some frames leave inside the field, further in than the fill reaches, is evened
out first (even_out_rim: the field's skin brought back to its own brightness, ring by ring).
The fill is deliberately plain (the median colour of the skin just inside the field, edges
feathered): it removes the frame without inventing texture. A model must still be fine-tuned
with fills on photos of every class (revise does), or the fill itself marks the framed ones.
Torch-free: the runtime applies it before the ONNX model, as training did."""

from __future__ import annotations

import cv2
import numpy as np

from .dark_field import detect_dark_field

FEATHER = 0.02  # of the image side: the blur that softens a pasted or filled region's edge
# of the shorter side: how far inside a frame's dark surround its blurred edge and bright rim
# reach (lens blur; light scattered off the contact plate)
FRAME_EDGE = 0.08


def feathered(mask: np.ndarray) -> np.ndarray:
    """(H, W, 1) float32 alpha: the mask with its edge blurred by FEATHER of the image side."""
    side = mask.shape[0]
    k = max(3, int(side * FEATHER) * 2 + 1)
    return cv2.GaussianBlur(mask.astype(np.float32), (k, k), 0)[..., None]


def fill_with_skin(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """`region` (bool, the image's size) replaced by the photo's own skin: the median colour of a
    band of pixels just outside it (the skin next to a ring's field edge, around a patch), the
    edge feathered. uint8 RGB in, uint8 RGB out (a new array)."""
    if not region.any():
        return image.copy()
    side = image.shape[0]
    k = max(3, int(side * 0.06) | 1)
    grown = cv2.dilate(region.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
    band = grown & ~region
    source = image[band] if band.any() else image[~region]
    if len(source) == 0:
        return image.copy()
    fill = np.broadcast_to(np.median(source, axis=0), image.shape)
    alpha = feathered(cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool))
    return np.clip(fill * alpha + image * (1 - alpha), 0, 255).astype(np.uint8)


def with_frame_edge(region: np.ndarray) -> np.ndarray:
    """A frame's dark region grown into the field by FRAME_EDGE of the shorter side. A mask (or
    the detector's circle) marks where the surround is dark; a real frame also darkens the
    field's edge and may brighten a rim just inside it. Moving only the dark part left the rim
    on the photo: the main job's ResNet50, fine-tuned so, still flagged 39% of benign held-out
    photos newly with a soft, rimmed frame painted on, and 12% with a circle or grey one (with
    the edge: 20%, 6% and 9%)."""
    k = 2 * max(1, int(round(FRAME_EDGE * min(region.shape[:2])))) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    return cv2.dilate(region.astype(np.uint8), kernel).astype(bool)


# A bright rim (light scattered off the contact plate) can reach far inside the field, further
# than the fill: RIM_REACH of the shorter side inside the fitted circle is searched for one.
RIM_REACH = 0.3
RIM_REFERENCE = 0.2  # rings further in than this (of the side) give the skin's own brightness
RIM_TOLERANCE = 0.03  # brighter than the skin by less than this is left as it is
# a reference ring must be mostly skin: on a small field (radius 0.34 of the side) rings whose few
# "skin" pixels were the lesion's pale edge set the level, and the skin near the frame was
# darkened toward it (13% of the field changed on average, up to 56%)
MIN_SKIN_SHARE = 0.4
# ... and lie this far (of the side) from the field's centre, where dermoscopy centres the lesion
REFERENCE_FROM_CENTRE = 0.15
MIN_SKIN_LEVEL = 16  # grey level (of 255): below it the band just inside the fill is not lit skin
PROFILE_SIZE = 256  # px: the longer side of the copy the rim's profile is measured on


def _skin_pixels(rgb: np.ndarray, grey: np.ndarray, band: np.ndarray) -> np.ndarray:
    """bool: pixels with the skin's chromaticity (a rim scales every channel alike, so it keeps
    the chromaticity) and at least 70% of the band's brightness (a lesion of the skin's hue but
    darker is not skin)."""
    total = rgb.sum(axis=2) + 1e-3
    chroma = rgb[..., :2] / total[..., None]
    skin_chroma = np.median(chroma[band], axis=0)
    return (np.abs(chroma - skin_chroma).sum(axis=2) < 0.03) & (grey >= 0.7 * np.median(grey[band]))


def even_out_rim(rgb: np.ndarray, circle: tuple[float, float, float], inset: float) -> np.ndarray:
    """The field's skin brought back to its own brightness where a rim brightens it near the
    frame: per ring of the field (1.5% of the side wide, from RIM_REACH inside the fitted circle
    to where the fill starts, `inset` px inside it), the median brightness of its skin pixels;
    rings brighter than the brightest ring further in than RIM_REFERENCE are scaled down to it
    (plus RIM_TOLERANCE), the scale interpolated smoothly between rings. Only rings that are
    mostly skin count (MIN_SKIN_SHARE), and reference rings lie at least REFERENCE_FROM_CENTRE
    from the centre: on a small field there is no such ring and nothing changes. Only ever
    darkens, and only where skin shows it: a lesion darker than the skin never sets the level.

    Why: a soft frame's bright rim was left on the photo after the fill (28% of a 96-px field
    more than 5% brighter than the frame-free photo; 18% evened). The main job's revised ResNet50
    flagged 10.6% of benign held-out photos newly with such a frame painted on; with the rim
    painted at half strength 6.6%, without it 3.3%, as the other styles; revised with the
    evening, 4.9% over six draws of the frames (2026-12-07, benchmarks/RESULTS.md)."""
    h, w = rgb.shape[:2]
    # the ring statistics on a copy at most PROFILE_SIZE px wide (the profile is smooth: 0.95 s
    # on a 2000x1500 photo at full size); the scale is applied at full size
    shrink = min(1.0, PROFILE_SIZE / max(h, w))
    small = rgb if shrink == 1.0 else cv2.resize(rgb, (max(1, round(w * shrink)), max(1, round(h * shrink))),
                                                 interpolation=cv2.INTER_AREA)
    profile = _rim_gain(small, circle, inset * shrink)
    if profile is None:
        return rgb
    centres, gain = profile
    scale = np.interp(_distance_to(circle, h, w) * shrink, centres, gain, left=1.0, right=gain[-1])
    return np.clip(rgb * scale[..., None].astype(np.float32), 0, 255).astype(np.uint8)


def _distance_to(circle: tuple[float, float, float], h: int, w: int) -> np.ndarray:
    """(h, w) float32: each pixel's distance from the fitted circle's centre, in px."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.sqrt((xx + 0.5 - circle[0] * w) ** 2 + (yy + 0.5 - circle[1] * h) ** 2)


def _rim_gain(rgb: np.ndarray, circle: tuple[float, float, float], inset: float):
    """(ring centres in px, scale per ring) for even_out_rim, or None when nothing is to change."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    r = circle[2] * w
    d = _distance_to(circle, h, w)
    image = rgb.astype(np.float32)
    grey = image.mean(axis=2)
    inner = r - inset
    band = (d >= inner - 0.05 * side) & (d < inner)  # just inside the fill: skin, rim-lit
    # a band with no lit skin in it (a field smaller than the fit, a black photo) has no rim to
    # even out, and its zero brightness would divide 0 by 0 below
    if band.sum() < 20 or np.median(grey[band]) < MIN_SKIN_LEVEL:
        return None
    skin = _skin_pixels(image, grey, band)
    step = max(1.0, 0.015 * side)
    edges = np.arange(r - RIM_REACH * side, inner + step, step)
    centres, levels = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        annulus = (d >= a) & (d < b)
        ring = skin & annulus
        if ring.sum() >= 15 and ring.sum() >= MIN_SKIN_SHARE * annulus.sum():
            centres.append((a + b) / 2)
            levels.append(float(np.median(grey[ring])))
    centres, levels = np.asarray(centres), np.asarray(levels)
    reference = levels[(centres < r - RIM_REFERENCE * side) & (centres >= REFERENCE_FROM_CENTRE * side)]
    if len(reference) < 2:
        return None  # no skin far enough in to say what the skin's brightness is
    gain = np.minimum(1.0, reference.max() * (1 + RIM_TOLERANCE) / levels)
    return None if gain.min() >= 1.0 else (centres, gain)


def remove_frame(rgb: np.ndarray) -> np.ndarray:
    """The photo with a detected frame filled with its skin, a bright rim inside the field evened
    out first; the photo itself when none is found."""
    found = detect_dark_field(rgb)
    if not found.is_ring:
        return rgb
    # the fill reaches FRAME_EDGE inside the fitted circle, drawn that much further in: what
    # with_frame_edge's dilation gives for a circle's outside, without a kernel of 8% of the side
    # (4.8 s on a 2000x1500 photo, against 0.1 s)
    h, w = rgb.shape[:2]
    inset = max(1, int(round(FRAME_EDGE * min(h, w))))
    return fill_with_skin(even_out_rim(rgb, found.circle, inset), found.region(h, w, inset=inset))
