"""The microscope ring (dark field) detector: is this photo framed by the black vignette of a
dermatoscope's round field of view, and where is that field?

On a small grey copy of the image (DETECT_SIZE px):
1. corner darkness: the darkest of the four corner patches' medians against the median of the
   central disc (a ring darkens all four corners, a lesion or a shadow rarely does);
2. threshold: pixels darker than DARK_FRACTION of the centre's brightness are "dark";
3. the largest bright connected component, holes filled (a dark lesion inside the field is
   still field), is the field of view; its minimum enclosing circle is the fitted field, and `coverage` is the share of that circle (inside the image) the bright
   component fills: a round field fills it, a dark blob or a ruler does not.

An image is a ring image when the corners are dark and the field is a well-filled circle that
leaves dark pixels outside it. `region` (the pixels outside the fitted circle) is the artifact
region for real data, which has no artifact masks. Nothing here needs a model, or torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DETECT_SIZE = 64  # px: enough for a circle fit; keeps the detector ~0.1 ms per image
CORNER = 0.12  # corner patch side, as a fraction of the image side
DARK_FRACTION = 0.45  # "dark" = below this fraction of the centre's median brightness
MIN_CORNER_CONTRAST = 0.55  # 1 - darkest-corner / centre brightness, for a ring
MIN_COVERAGE = 0.80  # of the fitted circle filled by the bright field
MIN_OUTSIDE_DARK = 0.60  # of the pixels outside the fitted circle that are dark


@dataclass
class DarkField:
    is_ring: bool
    score: float  # 0..1: corner contrast, times how well the field fills its circle
    corner_contrast: float  # 1 - (brightest of the four corners' medians) / centre median
    coverage: float  # share of the fitted circle filled by the bright field
    outside_dark: float  # share of the pixels outside the circle that are dark
    circle: tuple[float, float, float]  # (cx, cy, r) as fractions of the image width/height/width

    def region(self, height: int, width: int) -> np.ndarray:
        """bool (height, width): outside the fitted field (the dark frame); all False when no
        ring was found."""
        if not self.is_ring:
            return np.zeros((height, width), bool)
        cx, cy, r = self.circle
        yy, xx = np.mgrid[0:height, 0:width]
        return (xx + 0.5 - cx * width) ** 2 + (yy + 0.5 - cy * width) ** 2 > (r * width) ** 2

    def to_dict(self) -> dict:
        return {"is_ring": self.is_ring, "score": round(self.score, 4), "corner_contrast": round(self.corner_contrast, 4),
                "coverage": round(self.coverage, 4), "outside_dark": round(self.outside_dark, 4),
                "circle": [round(v, 4) for v in self.circle]}


def _grey_small(rgb: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    small = cv2.resize(grey, (DETECT_SIZE, DETECT_SIZE), interpolation=cv2.INTER_AREA)
    # a median filter erases hairs, which would otherwise cut the bright field in two
    return cv2.medianBlur(small, 5).astype(np.float32)


def _disc(size: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r


_CENTRE = _disc(DETECT_SIZE, DETECT_SIZE / 2, DETECT_SIZE / 2, DETECT_SIZE * 0.3)


def detect_dark_field(rgb: np.ndarray) -> DarkField:
    """Score one RGB (or grey) uint8 image of any size."""
    grey = _grey_small(rgb)
    s = DETECT_SIZE
    c = max(2, int(round(s * CORNER)))
    centre = float(np.median(grey[_CENTRE])) + 1e-6
    corners = [grey[:c, :c], grey[:c, -c:], grey[-c:, :c], grey[-c:, -c:]]
    # the brightest corner: a ring darkens all four, one dark corner (a patch, a shadow) is not a ring
    contrast = float(np.clip(1 - max(float(np.median(k)) for k in corners) / centre, 0, 1))
    bright = (grey >= DARK_FRACTION * centre).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=4)
    if count < 2:
        return DarkField(False, 0.0, contrast, 0.0, 0.0, (0.5, 0.5, 0.0))
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    # holes filled: a dark lesion or hair inside the field is still field
    contours, _ = cv2.findContours((labels == largest).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros((s, s), np.uint8)
    cv2.drawContours(filled, contours, -1, 1, thickness=-1)
    component = filled.astype(bool)
    points = cv2.findNonZero(filled)
    (cx, cy), r = cv2.minEnclosingCircle(points)
    r += 0.5  # pixel centres to pixel edges
    inside = _disc(s, cx + 0.5, cy + 0.5, r)
    coverage = float(component[inside].mean()) if inside.any() else 0.0
    outside = ~inside
    outside_dark = float((bright[outside] == 0).mean()) if outside.any() else 0.0
    is_ring = (contrast >= MIN_CORNER_CONTRAST and coverage >= MIN_COVERAGE and outside_dark >= MIN_OUTSIDE_DARK
               and outside.mean() >= 0.05)
    score = contrast * coverage * outside_dark
    return DarkField(bool(is_ring), float(score), contrast, coverage, outside_dark,
                     ((cx + 0.5) / s, (cy + 0.5) / s, r / s))
