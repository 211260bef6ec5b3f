"""The frame-paste test on held-out photos, one finding per frame style: paint each style of
dermatoscope frame (data/frames.py) onto the held-out images of the other classes, at their own
resolution and aspect, and count the images the model newly calls the frame's class.

This is the measure of a frame shortcut that does not depend on the training data's own frames:
a model that learnt only the generator's black circle, or only one device's grey surround, is
caught by the styles it never saw. Each photo gets DRAWS_PER_IMAGE frames of each style, drawn
anew. Images in which the detector already finds a frame are left out (pasting a frame there
changes nothing).

The control: the dark things that are not frames (data/frames.py LOOKALIKES: dark skin, a corner
shadow, an illumination gradient, lens vignetting, letterbox bars) painted the same way. None is
a frame. Letterbox bars, a corner shadow and vignetting leave the lesion alone: a model that
newly calls them the frame's class reads a dark border, the shortcut the frames taught it, even
where frame removal finds no frame to remove. Dark skin and a gradient darken the lesion too (a
darker lesion can honestly look more like a melanoma): for those, a fragility to lighting and skin
tone, not proof of a shortcut."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..data.frames import FRAME_STYLES, LOOKALIKES, draw_frame, draw_lookalike
from ..data.preprocess import decode_for, resize_to_spec
from ..explain.evaluation.metrics import bootstrap_ci
from ..data.dark_field import detect_dark_field

LOOKALIKE_KIND = "lookalike_paste"
MAX_NEWLY_FLAGGED = 0.05  # a frame that newly flags more than this share of the recipients is a shortcut
# frames of a style painted per recipient, each drawn anew (size, centre, rim strength). With one
# frame each, six draws of the soft style on the same revised ResNet50 gave 4.0-6.6% newly flagged
# (151 photos): the draw, not the model, decided which side of MAX_NEWLY_FLAGGED a run fell on
DRAWS_PER_IMAGE = 3


def _recipients(heldout: Path, spec, classes: list[str], index: int, n: int, seed: int):
    from ..data.decode import ImageDecodeError
    from ..data.readers import read_dataset

    dataset = read_dataset(Path(heldout))
    names = {c: k for k, c in enumerate(classes)}
    chosen = []
    for sample in dataset.samples:
        name = dataset.classes[sample.label]
        if names.get(name, index) == index:
            continue  # the frame's own class, or a class this model does not know
        try:
            rgb = decode_for(sample.path, spec)
        except ImageDecodeError:
            continue  # the audit's dataset half names unreadable files
        if not detect_dark_field(rgb).is_ring:
            chosen.append(rgb)
    rng = np.random.default_rng(seed)
    if len(chosen) > n:
        chosen = [chosen[i] for i in sorted(rng.choice(len(chosen), n, replace=False))]
    return chosen


TILE = 160  # pixels per image in the figure: the model's input (64-96 px) is too small to read


def _captioned(tile: np.ndarray, title: str, value: str) -> np.ndarray:
    """The model's input as the model saw it, enlarged, with the style and its effect below (the
    strip of bare images said neither)."""
    big = cv2.resize(tile, (TILE, TILE), interpolation=cv2.INTER_NEAREST)
    band = np.full((40, TILE, 3), 255, np.uint8)
    for row, text in ((16, title), (34, value)):
        cv2.putText(band, text, (6, row), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    gap = np.full((TILE + 40, 4, 3), 255, np.uint8)
    return np.concatenate([np.concatenate([big, band], 0), gap], 1)


def _painted_findings(photos, before, probabilities, decisions, spec, classes, index, seed, names, paint,
                      kind: str, noun: str, first_seed: int) -> tuple[list[dict], list[np.ndarray]]:
    """One finding per name in `names`: `paint(rng, float image, name)` applied DRAWS_PER_IMAGE
    times to every photo, each drawn anew, and the share of photos' paintings newly flagged."""
    findings, tiles = [], []
    for s, name in enumerate(names):
        painted = []
        for i, photo in enumerate(photos):
            for k in range(DRAWS_PER_IMAGE):
                img = photo.astype(np.float32)
                paint(np.random.default_rng([seed, first_seed + s, i, k]), img, name)
                painted.append(resize_to_spec(np.clip(img, 0, 255).astype(np.uint8), spec))
        after = decisions(probabilities(painted)).reshape(len(photos), DRAWS_PER_IMAGE)
        # per photo, the share of its paintings that newly flag it; the CI resamples photos
        newly = bootstrap_ci((after & ~before[:, None]).mean(axis=1), seed=seed)
        tiles.append(_captioned(painted[0], name.replace("_", " "), f"{newly['mean']:.0%} newly flagged"))
        findings.append({
            "kind": kind, "subject": f"{name.replace('_', ' ')} {noun} painted on held-out images of other classes",
            "p_value": None, "effect_size": newly["mean"], "effect_measure": f"share newly called {classes[index]}",
            "evidence": {"style": name, "images": len(photos), "draws_per_image": DRAWS_PER_IMAGE,
                         "class": classes[index],
                         "flagged_before": float(before.mean()), "flagged_after": float(after.mean()),
                         "newly_flagged": newly},
            "flagged": bool(newly["mean"] is not None and newly["mean"] > MAX_NEWLY_FLAGGED and newly["low"] > 0)})
    return findings, tiles


def frame_paste_findings(probabilities, decisions, spec, heldout: Path, classes: list[str], index: int,
                         n: int = 200, seed: int = 0) -> tuple[list[dict], dict[str, np.ndarray]]:
    """`probabilities(list of (S, S, 3) uint8) -> (n, K)`, `decisions(probs) -> bool (n,)`.
    Returns one finding per frame style, then one per look-alike (the control, LOOKALIKE_KIND),
    and the figures by file name (one recipient: every style; every look-alike)."""
    photos = _recipients(heldout, spec, classes, index, n, seed)
    if not photos:
        return [], {}
    before = decisions(probabilities([resize_to_spec(p, spec) for p in photos]))
    as_it_was = _captioned(resize_to_spec(photos[0], spec), "as it was", f"{before.mean():.0%} flagged")
    common = (photos, before, probabilities, decisions, spec, classes, index, seed)
    frames, frame_tiles = _painted_findings(*common, FRAME_STYLES, draw_frame, "frame_paste_style", "frame", 0)
    controls, control_tiles = _painted_findings(*common, LOOKALIKES, draw_lookalike, LOOKALIKE_KIND, "look-alike",
                                                len(FRAME_STYLES))
    return frames + controls, {"frame_paste_styles.png": np.concatenate([as_it_was] + frame_tiles, 1),
                               "lookalike_paste.png": np.concatenate([as_it_was] + control_tiles, 1)}
