"""The dermatoscope frame (dark field) detector: is this photo framed by the dark surround of a
dermatoscope's round field of view, and where is that field?

Real photos show the frame in many ways: a black circle inside the photo, only the four corners
dark (the field larger than the photo), dark bands left and right (a 4:3 photo whose field is
as tall as the image), a grey rather than black surround, a soft or off-centre edge. What they
share, and what a dark lesion, a shadow in one corner, an illumination gradient, lens vignetting
or letterbox bars do not: dark pixels connected to the photo's edge whose boundary with the
bright field is an arc of one circle, centred near the photo's centre, with (nearly) everything
outside that circle dark.

On a small grey copy of the image (its longer side DETECT_SIZE px, aspect kept):
1. the field's brightness: a high percentile of the central disc (a dark lesion there does not
   lower it); "dark" is below DARK_FRACTION of it;
2. the frame candidate: the dark pixels connected to the image border;
3. a circle fitted with RANSAC to the boundary between frame and field (robust to a lesion or a
   hair touching the frame), then refined on its inliers;
4. the checks above, each a named number in `DarkField` so a miss can be explained.

`region` (the pixels outside the fitted circle) is the artifact region for real data, which has
no artifact masks. Nothing here needs a model or torch. benchmarks/frame_detector.py measures a
learnt alternative against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DETECT_SIZE = 96  # px, the longer side: enough for a circle fit; ~1 ms per image
CENTRE_RADIUS = 0.45  # of the shorter side: the disc whose brightness is the field's
FIELD_PERCENTILE = 90
DARK_FRACTION = 0.5  # "dark" = below this fraction of the field's brightness
MAX_OFFSET = 0.25  # the circle's centre within this fraction of the shorter side of the photo's centre
MIN_INLIERS = 0.35  # share of the frame/field boundary on the circle
MIN_OUTSIDE_AREA = 0.008  # share of the photo outside the circle: less is no frame to speak of
MIN_OUTSIDE_DARK = 0.8  # share of the pixels outside the circle that are dark
MAX_OUTSIDE_LEVEL = 0.42  # the median outside the circle, as a fraction of the field's brightness
MIN_ARC_COVERAGE = 0.4  # share of the circle's arc inside the photo that the boundary follows
RANSAC_TRIALS = 150


@dataclass
class DarkField:
    is_ring: bool
    score: float  # 0..1: how many of the checks' margins hold, a ranking aid, not a probability
    outside_dark: float  # share of the pixels outside the fitted circle that are dark
    outside_level: float  # their median brightness / the field's brightness
    inliers: float  # share of the frame/field boundary on the circle
    arc_coverage: float  # share of the circle's in-photo arc the boundary follows
    offset: float  # distance of the circle's centre from the photo's, / shorter side
    outside_area: float  # share of the photo outside the circle
    circle: tuple[float, float, float]  # (cx / width, cy / height, r / width)

    def region(self, height: int, width: int, inset: float = 0.0) -> np.ndarray:
        """bool (height, width): outside the fitted field (the dark frame), reaching `inset` px
        into it; all False when no frame was found."""
        if not self.is_ring:
            return np.zeros((height, width), bool)
        cx, cy, r = self.circle
        yy, xx = np.mgrid[0:height, 0:width]
        radius = max(r * width - inset, 0.0)
        return (xx + 0.5 - cx * width) ** 2 + (yy + 0.5 - cy * height) ** 2 > radius ** 2

    def to_dict(self) -> dict:
        return {"is_ring": self.is_ring, "score": round(self.score, 4), "outside_dark": round(self.outside_dark, 4),
                "outside_level": round(self.outside_level, 4), "inliers": round(self.inliers, 4),
                "arc_coverage": round(self.arc_coverage, 4), "offset": round(self.offset, 4),
                "outside_area": round(self.outside_area, 4), "circle": [round(v, 4) for v in self.circle]}


def _grey_small(rgb: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    h, w = grey.shape
    scale = DETECT_SIZE / max(h, w)
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    # a median filter erases hairs, which would otherwise cut the field's boundary
    return cv2.medianBlur(small, 5).astype(np.float32)


def _fit_circle(points: np.ndarray) -> tuple[float, float, float]:
    """Least-squares (algebraic, Kasa) circle through (n, 2) points: (cx, cy, r)."""
    x, y = points[:, 0], points[:, 1]
    a = np.stack([x, y, np.ones_like(x)], 1)
    b = x * x + y * y
    (p, q, c), *_ = np.linalg.lstsq(a, b, rcond=None)
    cx, cy = p / 2, q / 2
    return float(cx), float(cy), float(np.sqrt(max(c + cx * cx + cy * cy, 0.0)))


def _ransac_circle(points: np.ndarray, tolerance: float, rng: np.random.Generator):
    best, best_count = None, 0
    n = len(points)
    for _ in range(RANSAC_TRIALS):
        sample = points[rng.choice(n, 3, replace=False)]
        (x1, y1), (x2, y2), (x3, y3) = sample
        d = 2 * (x1 * (y2 - y3) + x2 * (y3 - y1) + x3 * (y1 - y2))
        if abs(d) < 1e-6:
            continue
        s1, s2, s3 = x1 * x1 + y1 * y1, x2 * x2 + y2 * y2, x3 * x3 + y3 * y3
        cx = (s1 * (y2 - y3) + s2 * (y3 - y1) + s3 * (y1 - y2)) / d
        cy = (s1 * (x3 - x2) + s2 * (x1 - x3) + s3 * (x2 - x1)) / d
        r = np.hypot(x1 - cx, y1 - cy)
        count = int((np.abs(np.hypot(points[:, 0] - cx, points[:, 1] - cy) - r) < tolerance).sum())
        if count > best_count:
            best, best_count = (cx, cy, r), count
    if best is None:
        return None
    cx, cy, r = best
    inliers = points[np.abs(np.hypot(points[:, 0] - cx, points[:, 1] - cy) - r) < tolerance]
    return _fit_circle(inliers) if len(inliers) >= 3 else best


def _none(h: int, w: int) -> DarkField:
    return DarkField(False, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, (0.5, 0.5, 0.0))


def detect_dark_field(rgb: np.ndarray) -> DarkField:
    """Score one RGB (or grey) uint8 image of any size and aspect."""
    grey = _grey_small(rgb)
    h, w = grey.shape
    side = min(h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    centre = (xx + 0.5 - w / 2) ** 2 + (yy + 0.5 - h / 2) ** 2 <= (CENTRE_RADIUS * side) ** 2
    level = float(np.percentile(grey[centre], FIELD_PERCENTILE)) + 1e-6
    dark = (grey < DARK_FRACTION * level).astype(np.uint8)
    count, labels = cv2.connectedComponents(dark, connectivity=8)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    frame = np.isin(labels, border[border > 0])
    if frame.mean() < MIN_OUTSIDE_AREA:
        return _none(h, w)
    # the boundary: field pixels touching the frame, not on the photo's own edge
    touching = cv2.dilate(frame.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~frame
    touching[[0, -1], :] = False
    touching[:, [0, -1]] = False
    ys, xs = np.nonzero(touching)
    if len(xs) < 8:
        return _none(h, w)
    points = np.stack([xs + 0.5, ys + 0.5], 1).astype(np.float64)
    tolerance = max(1.5, side * 0.025)
    fitted = _ransac_circle(points, tolerance, np.random.default_rng(0))  # seeded: one answer per image
    if fitted is None:
        return _none(h, w)
    cx, cy, r = fitted
    distance = np.hypot(points[:, 0] - cx, points[:, 1] - cy)
    on_circle = np.abs(distance - r) < tolerance
    inliers = float(on_circle.mean())
    radial = np.hypot(xx + 0.5 - cx, yy + 0.5 - cy)
    outside_area = float((radial > r).mean())
    beyond = radial > r + tolerance  # past the field's blurred edge: what must be dark
    outside_dark = float(dark[beyond].mean()) if beyond.any() else 0.0
    outside_level = float(np.median(grey[beyond]) / level) if beyond.any() else 1.0
    offset = float(np.hypot(cx - w / 2, cy - h / 2) / side)
    # the share of the circle's arc inside the photo that the boundary follows (36 sectors)
    angles = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    ax, ay = cx + r * np.cos(angles), cy + r * np.sin(angles)
    in_photo = (ax > 1) & (ax < w - 1) & (ay > 1) & (ay < h - 1)
    hit_angles = np.arctan2(points[on_circle, 1] - cy, points[on_circle, 0] - cx) % (2 * np.pi)
    hit_bins = np.zeros(72, bool)
    hit_bins[(hit_angles / (2 * np.pi) * 72).astype(int) % 72] = True
    arc_coverage = float(hit_bins[in_photo].mean()) if in_photo.any() else 0.0
    checks = [
        (MAX_OFFSET - offset) / MAX_OFFSET,
        (inliers - MIN_INLIERS) / (1 - MIN_INLIERS),
        (outside_area - MIN_OUTSIDE_AREA) / MIN_OUTSIDE_AREA,
        (outside_dark - MIN_OUTSIDE_DARK) / (1 - MIN_OUTSIDE_DARK),
        (MAX_OUTSIDE_LEVEL - outside_level) / MAX_OUTSIDE_LEVEL,
        (arc_coverage - MIN_ARC_COVERAGE) / (1 - MIN_ARC_COVERAGE),
    ]
    is_ring = all(c >= 0 for c in checks) and r < np.hypot(w, h) / 2
    score = float(np.clip(min(checks) + 0.5, 0, 1))
    return DarkField(bool(is_ring), score, outside_dark, outside_level, inliers, arc_coverage, offset,
                     outside_area, ((cx) / w, (cy) / h, r / w))
