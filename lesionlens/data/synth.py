"""Procedural dermoscopy images with ground truth: lesion masks, planted artifacts and their masks.

Real datasets cannot be downloaded in CI, and judging an explanation needs to know where the
evidence really is, so the generator is a small benchmark of its own:

- benign / nevus: round, symmetric, one even brown, soft border;
- melanoma: asymmetric, irregular border, several colours (dark brown, black, blue-grey veil);
- seborrheic keratosis and BCC styles for N-class sets; unknown class names cycle the styles.

The classes overlap (mildly irregular nevi, featureless early melanomas) so a model has to learn
shape and colour, not one pixel. Each patient has one lesion photographed 1-4 times (rotated,
shifted, re-lit): near-duplicates that a grouped split must keep together.

Every dermoscopic feature drawn is written down too, CLEVR-XAI style (Arras et al. 2022: ground
truth of what the label depends on): one mask per feature under `_masks/features/<feature>/`, the
feature list in metadata.csv, so an explanation can be scored on whether it lights up the
features that make a melanoma a melanoma (MELANOMA_FEATURES), not just any blob on the lesion.

Artifacts (`ring` = the dark microscope frame the original team found in every melanoma photo,
in the styles real photos show it (frames.py), `ruler`, `ink` marker, coloured `patch`) are
planted at a rate in one class, so the audit and the explanations can be checked against a known
shortcut. Photos can be non-square (`aspect`), and frame look-alikes (dark skin, a shadow in a
corner, vignetting...) can be painted on clean photos, so a frame detector's false alarms show.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from .._io import write_bytes, write_text
from ..errors import UsageError
from ..names import class_list_problem
from .frames import FRAME_STYLES, LOOKALIKES, draw_frame, draw_lookalike, parse_aspect, photo_shape

ARTIFACTS = ("ring", "ruler", "ink", "patch", "none")
STYLES = ("benign", "melanoma", "keratosis", "bcc")

SKIN_TONES = np.array(
    [[238, 205, 185], [226, 178, 148], [204, 150, 115], [170, 115, 85], [122, 82, 58]], dtype=np.float32
)
BROWNS = np.array([[176, 120, 84], [150, 98, 66], [124, 80, 52], [102, 64, 42]], dtype=np.float32)
MELANOMA_COLOURS = {
    "dark_brown": (78, 48, 34),
    "black": (34, 26, 26),
    "blue_grey": (104, 116, 140),
    "red": (158, 76, 74),
    "regression_white": (214, 204, 204),
}
# the feature a colour blotch is, by its colour's name ("benign_centre": a nevus's darker centre)
BLOTCH_FEATURES = {"dark_brown": "irregular_blotch", "black": "black_area", "blue_grey": "blue_grey_veil",
                   "red": "red_area", "regression_white": "regression_area", "benign_centre": "dark_centre"}
FEATURES = ("globules", "irregular_blotch", "black_area", "blue_grey_veil", "red_area", "regression_area",
            "irregular_border", "dark_centre", "milia_cysts", "arborizing_vessels", "hair")
# what the melanoma label depends on in this generator (the classes differ by these)
MELANOMA_FEATURES = ("globules", "irregular_blotch", "black_area", "blue_grey_veil", "red_area",
                     "regression_area", "irregular_border")
BLOTCH_VISIBLE = 0.3  # a blotch's mask: where its blend weight is at least this (it fades smoothly)
IRREGULAR = 0.05  # the border is irregular where it departs from the smooth outline by this share of the radius


def style_for(class_name: str, index: int) -> str:
    name = class_name.lower()
    if "mel" in name or "malig" in name:
        return "melanoma"
    if "ker" in name or name in ("bkl", "sk"):
        return "keratosis"
    if "bcc" in name or "basal" in name:
        return "bcc"
    if "ben" in name or "nev" in name or name in ("nv", "nevus"):
        return "benign"
    return STYLES[index % len(STYLES)]


@dataclass
class Lesion:
    """Everything that stays the same between photographs of one lesion."""

    style: str
    radius: float  # fraction of image size
    aspect: float
    harmonics: np.ndarray  # (K, 2): amplitude, phase for k = 2..K+1
    asymmetry: float  # k = 1 offset term: one side bulges
    edge_softness: float
    base_colour: np.ndarray
    blotches: list  # (dx, dy, sigma, colour, strength, colour name) in lesion units
    dots: np.ndarray  # (M, 3): dx, dy, radius in lesion units, dark globules


def _sample_lesion(rng: np.random.Generator, style: str) -> Lesion:
    base = BROWNS[rng.integers(len(BROWNS))] + rng.normal(0, 6, 3)
    blotches, dots = [], np.zeros((0, 3))
    radius = rng.uniform(0.17, 0.3)
    if style == "melanoma":
        mild = rng.random() < 0.2  # featureless early melanoma: the hard cases
        irregularity = rng.uniform(0.04, 0.08) if mild else rng.uniform(0.07, 0.17)
        aspect = rng.uniform(1.0, 1.5)
        asymmetry = rng.uniform(0.05, 0.12) if mild else rng.uniform(0.1, 0.25)
        names = ["dark_brown"] if mild else list(
            rng.choice(["dark_brown", "black", "blue_grey", "red", "regression_white"],
                       size=rng.integers(2, 4), replace=False, p=[0.3, 0.25, 0.25, 0.1, 0.1])
        )
        for name in names:
            angle, dist = rng.uniform(0, 2 * math.pi), rng.uniform(0.25, 0.6)
            blotches.append((dist * math.cos(angle), dist * math.sin(angle), rng.uniform(0.25, 0.5),
                             np.array(MELANOMA_COLOURS[name], np.float32), rng.uniform(0.6, 0.95), str(name)))
        n_dots = 0 if mild else int(rng.integers(0, 7))
        ang = rng.uniform(0, 2 * math.pi, n_dots)
        dist = rng.uniform(0.55, 1.0, n_dots)
        dots = np.stack([dist * np.cos(ang), dist * np.sin(ang), rng.uniform(0.04, 0.08, n_dots)], 1)
        softness = rng.uniform(0.01, 0.03)
    elif style == "keratosis":
        irregularity, aspect, asymmetry = rng.uniform(0.03, 0.08), rng.uniform(1.1, 1.6), rng.uniform(0.0, 0.08)
        base = np.array([150, 115, 80], np.float32) + rng.normal(0, 10, 3)
        n_dots = int(rng.integers(6, 16))  # milia-like cysts and comedo openings
        ang, dist = rng.uniform(0, 2 * math.pi, n_dots), np.sqrt(rng.uniform(0, 0.8, n_dots))
        dots = np.stack([dist * np.cos(ang), dist * np.sin(ang), rng.uniform(0.03, 0.06, n_dots)], 1)
        softness = rng.uniform(0.005, 0.015)  # "stuck-on": sharply demarcated
    elif style == "bcc":
        irregularity, aspect, asymmetry = rng.uniform(0.03, 0.1), rng.uniform(1.0, 1.4), rng.uniform(0.0, 0.1)
        base = np.array([214, 150, 150], np.float32) + rng.normal(0, 8, 3)  # pink, translucent
        softness = rng.uniform(0.03, 0.05)
    else:  # benign nevus
        irregularity = rng.uniform(0.01, 0.06)
        aspect = rng.uniform(1.0, 1.25)
        asymmetry = rng.uniform(0.0, 0.06)
        if rng.random() < 0.3:  # darker centre, still symmetric
            blotches.append((0.0, 0.0, rng.uniform(0.3, 0.5), base * 0.8, rng.uniform(0.3, 0.6), "benign_centre"))
        softness = rng.uniform(0.02, 0.05)
    k = np.arange(2, 9)
    amplitudes = irregularity * rng.uniform(0.3, 1.0, len(k)) / np.sqrt(k - 1)
    harmonics = np.stack([amplitudes, rng.uniform(0, 2 * math.pi, len(k))], 1)
    return Lesion(style, radius, aspect, harmonics, asymmetry, softness, base, blotches, dots)


_THETA = np.linspace(0, 2 * math.pi, 360, endpoint=False)


def _border_wobble(lesion: Lesion) -> np.ndarray:
    """(360,) the outline's departure from its smooth shape, in radii: the harmonics k >= 2."""
    rho = np.zeros_like(_THETA)
    for k, (amp, phase) in enumerate(lesion.harmonics, start=2):
        rho = rho + amp * np.cos(k * _THETA + phase)
    return rho


def _outline(lesion: Lesion, center: np.ndarray, angle: float, scale: float, size: int,
             smooth: bool = False) -> np.ndarray:
    """(360, 2) outline points; `smooth`: without the wobble (the asymmetric ellipse only)."""
    rho = 1 + lesion.asymmetry * np.cos(_THETA)
    if not smooth:
        rho = rho + _border_wobble(lesion)
    theta = _THETA
    r = lesion.radius * size * scale * rho
    x, y = r * np.cos(theta) * lesion.aspect, r * np.sin(theta) / lesion.aspect
    c, s = math.cos(angle), math.sin(angle)
    pts = np.stack([c * x - s * y, s * x + c * y], 1) + center
    return pts


def _lesion_frame(lesion, center, angle, scale, size, dx, dy):
    """Lesion-unit offsets -> pixel coordinates for one view."""
    r = lesion.radius * size * scale
    c, s = math.cos(angle), math.sin(angle)
    return center[0] + r * (c * dx - s * dy), center[1] + r * (s * dx + c * dy)


def _irregular_border(lesion, center, angle, scale, size, shape) -> np.ndarray:
    """bool mask of the border's irregular stretches: between the drawn outline and the smooth one
    where they differ by IRREGULAR radii or more, grown by a pixel or two so the edge itself
    (where a map would light up) is inside."""
    mask = np.zeros(shape, np.uint8)
    wobbly = np.abs(_border_wobble(lesion)) >= IRREGULAR
    if not wobbly.any():
        return mask.astype(bool)
    drawn = _outline(lesion, center, angle, scale, size)
    smooth = _outline(lesion, center, angle, scale, size, smooth=True)
    for i in np.nonzero(wobbly)[0]:
        j = (i + 1) % len(drawn)
        quad = np.stack([drawn[i], drawn[j], smooth[j], smooth[i]])
        cv2.fillConvexPoly(mask, np.round(quad * 16).astype(np.int32), 1, cv2.LINE_8, shift=4)
    grow = 2 * max(1, round(size / 96)) + 1
    return cv2.dilate(mask, np.ones((grow, grow), np.uint8)).astype(bool)


def _skin(rng: np.random.Generator, tone: np.ndarray, height: int, width: int) -> np.ndarray:
    size = min(height, width)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy, xx = yy / height, xx / width
    gx, gy = rng.normal(0, 0.08, 2)
    light = 1 + gx * (xx - 0.5) + gy * (yy - 0.5)
    texture = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), size / 40)
    texture = texture / (texture.std() + 1e-6) * 0.03
    return tone[None, None, :] * (light + texture)[:, :, None]


def _draw_hair(rng, img, count) -> np.ndarray:
    """Draws `count` hairs on img; returns where (bool mask)."""
    mask = np.zeros(img.shape[:2], np.uint8)
    extent = np.array(img.shape[1::-1], np.float64)  # (width, height)
    scale = min(extent) / 128
    for _ in range(count):
        p0, p3 = rng.uniform(-0.1, 1.1, 2) * extent, rng.uniform(-0.1, 1.1, 2) * extent
        p1, p2 = rng.uniform(0, 1, 2) * extent, rng.uniform(0, 1, 2) * extent
        t = np.linspace(0, 1, 60)[:, None]
        curve = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3
        shade = float(rng.uniform(20, 70))
        thickness = max(1, round(scale * rng.uniform(0.7, 1.6)))
        cv2.polylines(img, [curve.astype(np.int32)], False, (shade, shade * 0.9, shade * 0.8), thickness, cv2.LINE_AA)
        cv2.polylines(mask, [curve.astype(np.int32)], False, 1, thickness, cv2.LINE_AA)
    return mask.astype(bool)


def paint_over(features: dict[str, np.ndarray], on_top: np.ndarray) -> None:
    """Takes `on_top` (dots or hair, painted over everything before) out of every painted
    feature's mask, in place: a globule inside the blue-grey veil is seen as a globule, and a
    concept that lights it must be named so, not after the veil around it (the veil's mask held
    every globule on it, so "the best mask" always said veil). The irregular border is a stretch
    of the outline, not paint, and keeps what lies on it."""
    for name in list(features):
        if name != "irregular_border":
            features[name] = features[name] & ~on_top
            if not features[name].any():
                del features[name]


def _render_lesion(rng, img, lesion, center, angle, scale, size):
    """`size` is the photo's shorter side: the lesion's scale. Returns (lesion mask uint8,
    {feature: bool mask} of what was drawn, FEATURES' names)."""
    height, width = img.shape[:2]
    mask = np.zeros((height, width), np.uint8)
    outline = _outline(lesion, center, angle, scale, size)
    cv2.fillPoly(mask, [np.round(outline * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), max(0.5, lesion.edge_softness * size))
    dist = cv2.distanceTransform((mask > 127).astype(np.uint8), cv2.DIST_L2, 3)
    depth = np.clip(dist / (dist.max() + 1e-6), 0, 1)
    colour = np.empty_like(img)
    colour[:] = lesion.base_colour
    colour *= (1.05 - 0.15 * depth)[:, :, None]  # slightly darker towards the centre
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r_px = lesion.radius * size * scale
    inside = mask > 127
    features: dict[str, np.ndarray] = {}

    def mark(name: str, where: np.ndarray) -> None:
        if where.any():
            features[name] = features.get(name, np.zeros_like(where)) | where

    for dx, dy, sigma, col, strength, name in lesion.blotches:
        bx, by = _lesion_frame(lesion, center, angle, scale, size, dx, dy)
        w = strength * np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * (sigma * r_px) ** 2))
        colour = colour * (1 - w[:, :, None]) + col * w[:, :, None]
        mark(BLOTCH_FEATURES[name], (w >= BLOTCH_VISIBLE) & inside)
    if lesion.style == "bcc":  # arborizing vessels: thin red branching lines
        vessels = np.zeros((height, width), np.uint8)
        for _ in range(int(rng.integers(3, 7))):
            pts = [np.array(center) + rng.normal(0, r_px * 0.4, 2)]
            for _ in range(5):
                pts.append(pts[-1] + rng.normal(0, r_px * 0.25, 2))
            cv2.polylines(colour, [np.array(pts, np.int32)], False, (170, 40, 50), max(1, size // 128), cv2.LINE_AA)
            cv2.polylines(vessels, [np.array(pts, np.int32)], False, 1, max(1, size // 128), cv2.LINE_AA)
        mark("arborizing_vessels", vessels.astype(bool) & inside)
    opacity = 0.55 if lesion.style == "bcc" else 0.95
    img[:] = img * (1 - opacity * soft[:, :, None]) + colour * (opacity * soft[:, :, None])
    dot_colour = (235, 230, 215) if lesion.style == "keratosis" else (40, 28, 26)
    dots = np.zeros((height, width), np.uint8)
    for dx, dy, rad in lesion.dots:
        px, py = _lesion_frame(lesion, center, angle, scale, size, dx, dy)
        cv2.circle(img, (int(px), int(py)), max(1, int(rad * r_px)), dot_colour, -1, cv2.LINE_AA)
        cv2.circle(dots, (int(px), int(py)), max(1, int(rad * r_px)), 1, -1, cv2.LINE_AA)
    paint_over(features, dots.astype(bool))
    mark("milia_cysts" if lesion.style == "keratosis" else "globules", dots.astype(bool))
    mark("irregular_border", _irregular_border(lesion, center, angle, scale, size, (height, width)))
    return mask, features


def _plant_artifact(rng, img, kind: str, size: int, frame_style: str = "") -> np.ndarray:
    """Paint artifact `kind` onto img; ruler, ink and patch on square photos (size x size)."""
    mask = np.zeros(img.shape[:2], np.uint8)
    if kind == "ring":
        mask = draw_frame(rng, img, frame_style or "circle")
    elif kind == "ruler":
        width = int(size * rng.uniform(0.08, 0.12))
        side = int(rng.integers(4))
        band = np.zeros((size, size), np.uint8)
        band[:width] = 255
        band = np.rot90(band, side).copy()
        img[band > 0] = rng.uniform(200, 240)
        ticks = np.zeros((size, size), np.uint8)
        step = max(3, size // 20)
        for i, x in enumerate(range(step // 2, size, step)):
            cv2.line(ticks, (x, 0), (x, int(width * (0.8 if i % 5 == 0 else 0.45))), 255, max(1, size // 128))
        ticks = np.rot90(ticks, side)
        img[ticks > 0] = 25
        mask[band > 0] = 255
    elif kind == "ink":
        colour = (95 + rng.normal(0, 10), 40 + rng.normal(0, 10), 150 + rng.normal(0, 10))  # gentian violet
        for _ in range(int(rng.integers(2, 5))):
            c = rng.uniform(0.15, 0.85, 2) * size
            axes = (int(rng.uniform(0.05, 0.15) * size), int(rng.uniform(0.02, 0.1) * size))
            start = float(rng.uniform(0, 360))
            cv2.ellipse(mask, (int(c[0]), int(c[1])), axes, float(rng.uniform(0, 180)), start,
                        start + rng.uniform(90, 300), 255, max(2, size // 50), cv2.LINE_AA)
        img[mask > 127] = colour
    elif kind == "patch":
        colour = [(240, 140, 40), (60, 140, 230), (70, 190, 90), (230, 70, 150)][int(rng.integers(4))]
        radius = int(rng.uniform(0.07, 0.11) * size)
        corner = rng.integers(2, size=2)
        c = [int(radius * 1.3 if k == 0 else size - radius * 1.3) for k in corner]
        cv2.circle(mask, (c[0], c[1]), radius, 255, -1, cv2.LINE_AA)
        img[mask > 127] = colour
    elif kind != "none":
        raise UsageError(f"unknown artifact {kind!r}; use one of {ARTIFACTS}")
    return mask


def render_view(lesion: Lesion, rng: np.random.Generator, tone: np.ndarray, size: int,
                aspect: tuple[int, int] = (1, 1)):
    """One photograph of `lesion` (shorter side `size`, width:height `aspect`): returns
    (float32 RGB, lesion mask uint8, {feature: bool mask}) before artifacts."""
    height, width = photo_shape(size, aspect)
    img = _skin(rng, tone, height, width)
    center = np.array([width / 2, height / 2]) + rng.normal(0, size * 0.04, 2)
    angle, scale = rng.uniform(0, 2 * math.pi), rng.uniform(0.9, 1.1)
    mask, features = _render_lesion(rng, img, lesion, center, angle, scale, size)
    hair = _draw_hair(rng, img, int(rng.choice(5, p=[0.35, 0.25, 0.2, 0.12, 0.08])))
    if hair.any():
        paint_over(features, hair)
        features["hair"] = hair
    img *= rng.uniform(0.92, 1.08)  # exposure
    return img, mask, features


def generate(
    out: Path,
    n: int = 600,
    size: int = 128,
    seed: int = 0,
    classes: Sequence[str] = ("benign", "melanoma"),
    artifact: str = "none",
    artifact_rate: float = 0.0,
    artifact_class: Optional[str] = None,
    artifact_rate_other: float = 0.0,
    aspect: str = "1:1",
    lookalike_rate: float = 0.0,
    progress: bool = True,
) -> Path:
    """Write `n` images to OUT/<class>/<id>.png, masks under OUT/_masks/, and OUT/metadata.csv.

    `artifact` is one of ARTIFACTS, or `ring:STYLE` for one frame style (plain `ring` draws a
    style at random per image, from FRAME_STYLES). `aspect` (width:height, e.g. 4:3) makes
    non-square photos whose shorter side is `size`. `lookalike_rate` paints a frame look-alike
    (LOOKALIKES: dark skin, a corner shadow...) on that share of the images without an artifact,
    in every class, so a detector's false alarms can be counted.

    Deterministic for a seed: every image draws from its own generator seeded by
    (seed, patient, view), so the same arguments give byte-identical files."""
    from tqdm.auto import tqdm

    artifact, _, frame_style = str(artifact).partition(":")
    if frame_style and (artifact != "ring" or frame_style not in FRAME_STYLES):
        raise UsageError(f"--artifact ring:STYLE takes a style of {FRAME_STYLES}, got {artifact}:{frame_style}")
    shape = parse_aspect(aspect)
    if shape[0] != shape[1] and artifact not in ("ring", "none"):
        raise UsageError(f"--aspect {aspect}: the {artifact} artifact is drawn on square photos only")
    if not 0 <= lookalike_rate <= 1:
        raise UsageError(f"--lookalike-rate must be in [0, 1], got {lookalike_rate}")

    classes = list(classes)
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise UsageError("need at least two distinct class names")
    problem = class_list_problem(classes)
    if problem:  # each class becomes a folder OUT/<class>/: a name like "../x" must never get there
        raise UsageError(f"--classes: {problem}")
    if artifact not in ARTIFACTS:
        raise UsageError(f"unknown artifact {artifact!r}; use one of {ARTIFACTS}")
    if artifact != "none":
        artifact_class = artifact_class or next((c for c in classes if style_for(c, 0) == "melanoma"), classes[-1])
        if artifact_class not in classes:
            raise UsageError(f"--artifact-class {artifact_class!r} is not one of {classes}")
    out = Path(out)
    for sub in [*classes, "_masks/lesion", "_masks/artifact"]:
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows, patient, bar = [], 0, tqdm(total=n, desc="synthesising", disable=not progress, leave=False)
    while len(rows) < n:
        prng = np.random.default_rng([seed, patient, 0])
        label = int(prng.integers(len(classes)))
        lesion = _sample_lesion(prng, style_for(classes[label], label))
        tone = SKIN_TONES[prng.integers(len(SKIN_TONES))] * prng.uniform(0.95, 1.05, 3)
        views = int(prng.choice([1, 2, 3, 4], p=[0.4, 0.3, 0.2, 0.1]))
        for view in range(min(views, n - len(rows))):
            rng = np.random.default_rng([seed, patient, view + 1])
            img, lesion_mask, features = render_view(lesion, rng, tone, size, shape)
            rate = artifact_rate if classes[label] == artifact_class else artifact_rate_other
            kind = artifact if artifact != "none" and rng.random() < rate else "none"
            style = (frame_style or FRAME_STYLES[int(rng.integers(len(FRAME_STYLES)))]) if kind == "ring" else ""
            artifact_mask = _plant_artifact(rng, img, kind, size, style)
            lookalike = ""
            if kind == "none" and lookalike_rate and rng.random() < lookalike_rate:
                lookalike = LOOKALIKES[int(rng.integers(len(LOOKALIKES)))]
                draw_lookalike(rng, img, lookalike)
            img += rng.normal(0, rng.uniform(1.5, 5), img.shape)  # sensor noise
            rgb = np.clip(img, 0, 255).astype(np.uint8)
            image_id = f"img_{len(rows):06d}"
            rel = f"{classes[label]}/{image_id}.png"
            _write_png(out / rel, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            _write_png(out / "_masks/lesion" / f"{image_id}.png", lesion_mask)
            artifact_rel = ""
            if kind != "none":
                artifact_rel = f"_masks/artifact/{image_id}.png"
                _write_png(out / artifact_rel, artifact_mask)
            feature_rels = []
            for feature in (f for f in FEATURES if f in features):
                visible = features[feature] & (artifact_mask <= 127)  # what an artifact covers is not visible
                if visible.any():
                    feature_rels.append((feature, f"_masks/features/{feature}/{image_id}.png"))
                    (out / "_masks/features" / feature).mkdir(parents=True, exist_ok=True)
                    _write_png(out / feature_rels[-1][1], visible.astype(np.uint8) * 255)
            rows.append([rel, classes[label], f"patient_{patient:05d}", f"lesion_{patient:05d}", view,
                         f"_masks/lesion/{image_id}.png", kind, artifact_rel, style, lookalike,
                         ";".join(f for f, _ in feature_rels), ";".join(r for _, r in feature_rels)])
            bar.update(1)
        patient += 1
    bar.close()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["image", "label", "patient_id", "lesion_id", "view", "lesion_mask", "artifact", "artifact_mask",
                     "frame_style", "lookalike", "features", "feature_masks"])
    writer.writerows(rows)
    return write_text(out / "metadata.csv", buffer.getvalue())


def sample_photo(seed: int, size: int = 96, aspect: tuple[int, int] = (1, 1), frame: str = "",
                 lookalike: str = "", style: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One photo without files: (rgb uint8, lesion mask, frame mask), a frame of style `frame`
    and/or a look-alike painted on. For tests and benchmarks of the frame detector."""
    rng = np.random.default_rng([seed, 7])
    lesion = _sample_lesion(rng, style or STYLES[int(rng.integers(2))])
    tone = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.95, 1.05, 3)
    img, lesion_mask, _ = render_view(lesion, rng, tone, size, aspect)
    frame_mask = draw_frame(rng, img, frame) if frame else np.zeros(img.shape[:2], np.uint8)
    if lookalike:
        draw_lookalike(rng, img, lookalike)
    img += rng.normal(0, rng.uniform(1.5, 5), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), lesion_mask, frame_mask


def _write_png(path: Path, pixels: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise ValueError(f"could not encode {path}")
    write_bytes(path, encoded.tobytes())
