"""The dermatoscope frame detector against every frame style the generator draws, the look-alikes
it draws, and variants painted here by code the detector was never tuned on (issue 18)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lesionlens.data.dark_field import detect_dark_field
from lesionlens.data.frames import FRAME_STYLES, LOOKALIKES
from lesionlens.data.synth import sample_photo

N = 200  # per style and per look-alike, half square, half 4:3
ASPECTS = [(1, 1), (4, 3)]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.mark.parametrize("style", FRAME_STYLES)
def test_every_frame_style_is_found_and_its_region_covers_the_frame(style):
    found, ious = [], []
    for i in range(N):
        rgb, _, mask = sample_photo(10_000 + i, 96, ASPECTS[i % 2], frame=style)
        result = detect_dark_field(rgb)
        found.append(result.is_ring)
        if result.is_ring:
            ious.append(_iou(result.region(*rgb.shape[:2]), mask > 0))
    assert np.mean(found) >= 0.95, f"{style}: recall {np.mean(found):.3f}"
    assert np.mean(ious) >= 0.6, f"{style}: mean IoU {np.mean(ious):.3f}"


@pytest.mark.parametrize("kind", [*LOOKALIKES, ""])
def test_look_alikes_raise_few_false_alarms(kind):
    alarms = [detect_dark_field(sample_photo(20_000 + i, 96, ASPECTS[i % 2], lookalike=kind)[0]).is_ring
              for i in range(N)]
    assert np.mean(alarms) <= 0.02, f"{kind or 'clean'}: false alarms {np.mean(alarms):.3f}"


# ---- variants painted here, not by the generator: the detector was not tuned to these ----------

def _clean(seed: int, aspect=(1, 1), size: int = 96) -> np.ndarray:
    return sample_photo(seed, size, aspect)[0]


def _darken_outside(rgb: np.ndarray, field: np.ndarray, colour=(6, 6, 6), blur: float = 1.5):
    """Everything outside the bool `field` painted `colour`, the edge blurred by `blur` px."""
    alpha = cv2.GaussianBlur((~field).astype(np.float32), (0, 0), blur)[..., None]
    out = rgb.astype(np.float32) * (1 - alpha) + np.asarray(colour, np.float32) * alpha
    return np.clip(out, 0, 255).astype(np.uint8), ~field


def _ellipse_field(h, w, cx, cy, ax, ay):
    field = np.zeros((h, w), np.uint8)
    cv2.ellipse(field, (int(cx), int(cy)), (int(ax), int(ay)), 0, 0, 360, 1, -1)
    return field.astype(bool)


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)


def _variant(name: str, seed: int):
    rng = np.random.default_rng(seed)
    if name == "jpeg_q40":
        rgb, _, mask = sample_photo(seed, 96, (1, 1), frame="circle")
        return _jpeg(rgb, 40), mask > 0
    if name == "wide_16_9":
        rgb = _clean(seed, (16, 9), 90)
        h, w = rgb.shape[:2]
        return _darken_outside(rgb, _ellipse_field(h, w, w / 2, h / 2, h * 0.52, h * 0.52))
    if name == "portrait_3_4":
        rgb = _clean(seed, (3, 4))
        h, w = rgb.shape[:2]
        return _darken_outside(rgb, _ellipse_field(h, w, w / 2, h / 2, w * 0.5, w * 0.5))
    if name == "brown_surround":
        rgb = _clean(seed)
        return _darken_outside(rgb, _ellipse_field(96, 96, 48, 48, 44, 44), colour=(45, 30, 22))
    if name == "ellipse":
        rgb = _clean(seed)
        return _darken_outside(rgb, _ellipse_field(96, 96, 48, 48, 46, 40))
    if name == "text_on_frame":  # devices stamp a scale or a date into the frame
        rgb, mask = _darken_outside(_clean(seed), _ellipse_field(96, 96, 48, 48, 43, 43))
        cv2.putText(rgb, "10x", (2, 92), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (230, 230, 230), 1)
        return rgb, mask
    if name == "off_centre":
        dx, dy = rng.choice([-1, 1], 2) * 10
        rgb = _clean(seed)
        return _darken_outside(rgb, _ellipse_field(96, 96, 48 + dx, 48 + dy, 42, 42))
    if name == "small_field":
        rgb = _clean(seed)
        return _darken_outside(rgb, _ellipse_field(96, 96, 48, 48, 33, 33), blur=3)
    raise AssertionError(name)


UNTUNED_FRAMES = ["jpeg_q40", "wide_16_9", "portrait_3_4", "brown_surround", "ellipse", "text_on_frame",
                  "off_centre", "small_field"]


@pytest.mark.parametrize("name", UNTUNED_FRAMES)
def test_frames_drawn_another_way_are_found(name):
    found, ious = [], []
    for i in range(60):
        rgb, mask = _variant(name, 30_000 + i)
        result = detect_dark_field(rgb)
        found.append(result.is_ring)
        if result.is_ring:
            ious.append(_iou(result.region(*rgb.shape[:2]), mask))
    assert np.mean(found) >= 0.95, f"{name}: recall {np.mean(found):.3f}"
    assert np.mean(ious) >= 0.6, f"{name}: IoU {np.mean(ious):.3f}"


def _lookalike(name: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if name == "pillarbox":  # a 4:3 still shown in a 16:9 frame: straight black bars at the sides
        rgb = _clean(seed, (4, 3))
        h, w = rgb.shape[:2]
        bar = int(w * rng.uniform(0.08, 0.14))
        rgb[:, :bar] = 5
        rgb[:, w - bar:] = 5
        return rgb
    if name == "sleeve":  # dark clothing over one side, a wavy edge
        rgb = _clean(seed).astype(np.float32)
        x = np.arange(96)
        edge = 96 * rng.uniform(0.15, 0.3) + 4 * np.sin(x / rng.uniform(5, 12))
        yy = np.mgrid[0:96, 0:96][0]
        rgb[yy < edge[None, :]] *= 0.12
        return np.rot90(np.clip(rgb, 0, 255).astype(np.uint8), int(rng.integers(4))).copy()
    if name == "strong_vignetting":  # corners at ~55%: dark, but not a frame
        rgb = _clean(seed).astype(np.float32)
        yy, xx = np.mgrid[0:96, 0:96]
        d = np.hypot(xx - 47.5, yy - 47.5) / np.hypot(48, 48)
        return np.clip(rgb * (1 - 0.45 * d ** 2)[..., None], 0, 255).astype(np.uint8)
    if name == "dark_lesion_at_edge":
        rgb = _clean(seed)
        cx, cy = [(0, 48), (95, 48), (48, 0), (48, 95)][int(rng.integers(4))]
        cv2.ellipse(rgb, (cx, cy), (int(rng.uniform(14, 22)), int(rng.uniform(10, 18))), float(rng.uniform(0, 180)),
                    0, 360, (40, 28, 24), -1, cv2.LINE_AA)
        return rgb
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["pillarbox", "sleeve", "strong_vignetting", "dark_lesion_at_edge"])
def test_dark_things_that_are_not_frames_are_not_called_frames(name):
    alarms = [detect_dark_field(_lookalike(name, 40_000 + i)).is_ring for i in range(60)]
    assert np.mean(alarms) <= 0.05, f"{name}: false alarms {np.mean(alarms):.3f}"


def test_the_detector_reads_any_size_and_a_grey_image():
    rgb, _, _ = sample_photo(1, 300, (4, 3), frame="bands")
    assert detect_dark_field(rgb).is_ring
    assert detect_dark_field(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)).is_ring
    assert not detect_dark_field(np.zeros((40, 40, 3), np.uint8)).is_ring  # all dark: no field
    assert not detect_dark_field(np.full((40, 40, 3), 200, np.uint8)).is_ring


# ---- frame removal (PreprocessSpec.unframe): what `revise --method unframe` feeds the model ------

def _dark_share(rgb: np.ndarray, mask: np.ndarray, field_level: float) -> float:
    """Share of the frame's pixels still darker than half the field's brightness."""
    grey = rgb.astype(np.float32).mean(axis=2)
    return float((grey[mask] < 0.5 * field_level).mean())


@pytest.mark.parametrize("style", FRAME_STYLES)
def test_frame_removal_fills_every_style_with_skin(style):
    from lesionlens.data.frame_removal import remove_frame

    left = []
    for i in range(60):
        rgb, _, mask = sample_photo(50_000 + i, 96, ASPECTS[i % 2], frame=style)
        clean = sample_photo(50_000 + i, 96, ASPECTS[i % 2])[0]  # the same photo without the frame
        level = float(np.percentile(clean.mean(axis=2), 90))
        frame = mask > 0
        assert _dark_share(rgb, frame, level) > 0.5  # it was a dark frame
        left.append(_dark_share(remove_frame(rgb), frame, level))
    # the detector's recall is >= 0.95 per style; on what it finds nothing dark is left
    assert np.mean(np.array(left) < 0.05) >= 0.95, f"{style}: dark frame left on {np.mean(np.array(left) >= 0.05):.2f}"


def _fill_and_removal(rgb: np.ndarray):
    """(fill only, remove_frame) brightness and the field left unfilled (less the fill's feathered
    edge) for `rgb`; None where no frame is found."""
    from lesionlens.data.frame_removal import FRAME_EDGE, fill_with_skin, remove_frame

    found = detect_dark_field(rgb)
    if not found.is_ring:
        return None
    h, w = rgb.shape[:2]
    inset = max(1, int(round(FRAME_EDGE * min(h, w))))
    field = ~found.region(h, w, inset=inset + 0.03 * min(h, w))
    filled = fill_with_skin(rgb, found.region(h, w, inset=inset)).astype(np.float32).mean(axis=2)
    return filled, remove_frame(rgb).astype(np.float32).mean(axis=2), field


def _framed(style: str, seed: int) -> np.ndarray:
    return sample_photo(seed, 96, ASPECTS[seed % 2], frame=style)[0]


def _field_after_removal(style: str, seed: int):
    """(frame-free photo, fill only, remove_frame) brightness, and the field left unfilled, for a
    photo with a frame of `style`; None where none is found."""
    found = _fill_and_removal(_framed(style, seed))
    if found is None:
        return None
    clean = sample_photo(seed, 96, ASPECTS[seed % 2])[0].astype(np.float32).mean(axis=2)
    return (clean, *found)


def _share_changed_by_evening(rgb: np.ndarray):
    """The share of the unfilled field whose brightness remove_frame's rim evening changes by more
    than 5%; None where no frame is found."""
    found = _fill_and_removal(rgb)
    if found is None:
        return None
    filled, evened, field = found
    return float((np.abs(evened - filled) > 0.05 * filled)[field].mean())


def test_frame_removal_evens_out_a_bright_rim_and_leaves_fields_without_one():
    """A soft frame's bright rim reaches inside the field past the fill (measured: 28% of the
    field more than 5% brighter than the frame-free photo with the fill alone, 18% evened out);
    on frames without a rim the evening changes little (2% of the field on average)."""
    brighter = {"fill": [], "evened": []}
    for i in range(100):
        found = _field_after_removal("soft", 90_000 + i)
        if found is None:
            continue
        clean, filled, evened, field = found
        brighter["fill"].append(((filled > 1.05 * clean) & field).sum() / field.sum())
        brighter["evened"].append(((evened > 1.05 * clean) & field).sum() / field.sum())
    assert len(brighter["fill"]) >= 90 and np.mean(brighter["fill"]) > 0.15  # there was a rim to even out
    assert np.mean(brighter["evened"]) <= 0.75 * np.mean(brighter["fill"]), brighter
    for style in ("circle", "grey", "bands"):
        changed = [c for c in (_share_changed_by_evening(_framed(style, 91_000 + i)) for i in range(60))
                   if c is not None]
        assert np.mean(changed) <= 0.05, f"{style}: the evening changed {np.mean(changed):.3f} of the field"


@pytest.mark.parametrize("name", UNTUNED_FRAMES)
def test_rim_evening_leaves_untuned_frames_without_a_rim_nearly_alone(name):
    """None of these frames has a rim. A small field (radius 0.34 of the side) once had its skin
    darkened toward the lesion's edge (13% of the field on average, up to 56%): its reference
    rings lay on the lesion. Measured since: <= 1.2% on average for each variant."""
    changed = [c for c in (_share_changed_by_evening(_variant(name, 30_000 + i)[0]) for i in range(60))
               if c is not None]
    assert len(changed) >= 50 and np.mean(changed) <= 0.03, f"{name}: {np.mean(changed):.3f} of the field changed"


def test_rim_evening_leaves_a_field_without_lit_skin_alone():
    """A fitted circle whose inside is black (a pasted frame bigger than the field, a black photo):
    nothing to even out, and no 0/0 (it once turned such pixels into garbage in a fine-tune)."""
    import warnings

    from lesionlens.data.frame_removal import even_out_rim

    dark = np.zeros((64, 80, 3), np.uint8)
    dark[20:40, 30:50] = 200  # lit, but only in the middle: the band near the fill is black
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(even_out_rim(dark, (0.5, 0.5, 0.4), 5), dark)
        assert np.array_equal(even_out_rim(np.zeros_like(dark), (0.5, 0.5, 0.4), 5), np.zeros_like(dark))


@pytest.mark.parametrize("kind", [*LOOKALIKES, ""])
def test_frame_removal_leaves_photos_without_a_frame_as_they_are(kind):
    from lesionlens.data.frame_removal import remove_frame

    changed = [not np.array_equal(remove_frame(rgb), rgb)
               for rgb in (sample_photo(60_000 + i, 96, ASPECTS[i % 2], lookalike=kind)[0] for i in range(100))]
    assert np.mean(changed) <= 0.02, f"{kind or 'clean'}: changed {np.mean(changed):.2f}"


def test_unframe_spec_removes_the_frame_before_resizing_and_only_when_asked():
    from lesionlens.data.frame_removal import remove_frame
    from lesionlens.data.preprocess import PreprocessSpec, resize_to_spec

    rgb, _, _ = sample_photo(3, 120, (4, 3), frame="soft")
    plain, unframe = PreprocessSpec(size=64), PreprocessSpec(size=64, unframe=True)
    assert np.array_equal(resize_to_spec(rgb, unframe), resize_to_spec(remove_frame(rgb), plain))
    assert not np.array_equal(resize_to_spec(rgb, unframe), resize_to_spec(rgb, plain))
    assert PreprocessSpec.from_json(unframe.to_json()).unframe is True
    with pytest.raises(ValueError, match="unframe"):
        PreprocessSpec(size=64, unframe="yes")


@pytest.mark.parametrize("name", UNTUNED_FRAMES)
def test_frame_removal_fills_frames_drawn_another_way(name):
    from lesionlens.data.frame_removal import remove_frame

    left = []
    for i in range(40):
        rgb, mask = _variant(name, 70_000 + i)
        level = float(np.percentile(rgb.mean(axis=2)[~mask], 90))
        left.append(_dark_share(remove_frame(rgb), mask, level))
    assert np.mean(np.array(left) < 0.05) >= 0.95, f"{name}: dark frame left on {np.mean(np.array(left) >= 0.05):.2f}"
