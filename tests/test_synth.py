import csv
import hashlib

import cv2
import numpy as np

from lesionlens.data.frames import FRAME_STYLES, LOOKALIKES
from lesionlens.data.synth import generate


def _digest(folder):
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def _rows(folder):
    with open(folder / "metadata.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    kwargs = dict(n=30, size=48, artifact="ruler", artifact_rate=0.5, progress=False)
    generate(tmp_path / "a", seed=5, **kwargs)
    generate(tmp_path / "b", seed=5, **kwargs)
    generate(tmp_path / "c", seed=6, **kwargs)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_metadata_masks_and_artifacts_are_consistent(synth_small):
    rows = _rows(synth_small)
    assert len(rows) == 120
    assert {"image", "label", "patient_id", "lesion_mask", "artifact", "artifact_mask"} <= set(rows[0])
    per_patient = {}
    for r in rows:
        per_patient.setdefault(r["patient_id"], set()).add(r["label"])
        img = cv2.imread(str(synth_small / r["image"]))
        lesion = cv2.imread(str(synth_small / r["lesion_mask"]), cv2.IMREAD_GRAYSCALE)
        assert img.shape == (64, 64, 3) and lesion.shape == (64, 64)
        assert 0.02 < (lesion > 127).mean() < 0.6  # a lesion, not the whole frame
        assert r["image"].startswith(r["label"] + "/")
        if r["artifact"] == "ring":
            ring = cv2.imread(str(synth_small / r["artifact_mask"]), cv2.IMREAD_GRAYSCALE)
            assert ring[0, 0] > 127 and ring[32, 32] == 0  # dark corners, clear centre
            darkest = 0.6 if r["frame_style"] in ("grey", "soft") else 0.5  # a grey surround, a soft edge
            assert img[ring > 127].mean() < darkest * img[ring == 0].mean()  # the frame really is dark
            assert r["frame_style"] in FRAME_STYLES
        else:
            assert r["artifact"] == "none" and r["artifact_mask"] == ""
    assert all(len(labels) == 1 for labels in per_patient.values())
    assert len(per_patient) < len(rows)  # some patients photographed more than once
    mel = [r for r in rows if r["label"] == "melanoma"]
    ben = [r for r in rows if r["label"] == "benign"]
    assert 0.6 < np.mean([r["artifact"] == "ring" for r in mel]) <= 1.0
    assert not any(r["artifact"] != "none" for r in ben)  # the rest clean unless a second rate


def test_n_classes_every_artifact_and_second_rate(tmp_path):
    classes = ["nevus", "melanoma", "seborrheic_keratosis", "bcc"]
    for artifact in ("ink", "patch", "ruler"):
        out = tmp_path / artifact
        generate(out, n=40, size=48, seed=1, classes=classes, artifact=artifact, artifact_rate=1.0,
                 artifact_rate_other=1.0, progress=False)
        rows = _rows(out)
        assert {r["label"] for r in rows} == set(classes)
        assert all(r["artifact"] == artifact for r in rows)
        for r in rows[:5]:
            mask = cv2.imread(str(out / r["artifact_mask"]), cv2.IMREAD_GRAYSCALE)
            assert (mask > 127).mean() > 0.005


def test_classes_differ_in_colour_variety(tmp_path):
    """Melanomas carry more colours than nevi: the signal a model must learn is really there."""
    generate(tmp_path, n=80, size=64, seed=2, progress=False)
    spread = {"benign": [], "melanoma": []}
    for r in _rows(tmp_path):
        img = cv2.imread(str(tmp_path / r["image"])).astype(np.float32)
        mask = cv2.imread(str(tmp_path / r["lesion_mask"]), cv2.IMREAD_GRAYSCALE) > 127
        spread[r["label"]].append(img[mask].std(0).mean())
    assert np.median(spread["melanoma"]) > 1.3 * np.median(spread["benign"])


def test_frame_styles_non_square_photos_and_look_alikes(tmp_path):
    """`ring` draws every frame style at random, `ring:STYLE` one; --aspect gives 4:3 photos with
    masks of the same shape; look-alikes land only on artifact-free images, in every class."""
    generate(tmp_path / "mix", n=80, size=48, seed=3, artifact="ring", artifact_rate=1.0, aspect="4:3",
             lookalike_rate=1.0, progress=False)
    rows = _rows(tmp_path / "mix")
    assert {r["frame_style"] for r in rows if r["artifact"] == "ring"} == set(FRAME_STYLES)
    assert {r["lookalike"] for r in rows if r["artifact"] == "none"} <= set(LOOKALIKES)
    assert all(r["lookalike"] == "" for r in rows if r["artifact"] == "ring")
    assert {r["label"] for r in rows if r["lookalike"]} == {"benign"}  # melanomas all carry the frame here
    for r in rows[:10]:
        img = cv2.imread(str(tmp_path / "mix" / r["image"]))
        lesion = cv2.imread(str(tmp_path / "mix" / r["lesion_mask"]), cv2.IMREAD_GRAYSCALE)
        assert img.shape == (48, 64, 3) and lesion.shape == (48, 64)
    generate(tmp_path / "one", n=20, size=48, seed=3, artifact="ring:corners", artifact_rate=1.0, progress=False)
    assert {r["frame_style"] for r in _rows(tmp_path / "one") if r["artifact"] == "ring"} == {"corners"}
    from lesionlens.errors import UsageError
    import pytest

    for bad in (dict(artifact="ring:bogus"), dict(artifact="ruler", aspect="4:3"), dict(aspect="9:1"),
                dict(aspect="x"), dict(lookalike_rate=2.0)):
        with pytest.raises(UsageError):
            generate(tmp_path / "bad", n=2, size=32, progress=False, **bad)


def test_feature_masks_mark_what_the_generator_drew(tmp_path):
    """Each feature mask sits where that feature's colour is (measured against the rest of the
    lesion), the irregular border on the lesion's edge, more of it on melanomas, and nothing
    under a planted frame. Dots and hair, painted over everything, own their pixels: no other
    painted feature's mask holds them (it did: 79 of 103 held-out photos with globules had them
    inside a blotch's mask, so a concept on a globule was named after the veil around it)."""
    from lesionlens.data.synth import FEATURES

    out = generate(tmp_path / "d", n=120, size=96, seed=11, artifact="ring", artifact_rate=0.3, progress=False).parent
    rows = list(csv.DictReader(open(out / "metadata.csv", newline="")))
    contrast, near_edge, edge_cover, on_top_overlaps = {}, [], {"benign": [], "melanoma": []}, []
    for row in rows:
        names, paths = row["features"].split(";"), row["feature_masks"].split(";")
        assert (names == [""]) == (paths == [""]) and len(names) == len(paths)
        assert all(n in FEATURES for n in names if n) and names == sorted(names, key=lambda n: (FEATURES + ("",)).index(n))
        img = cv2.imread(str(out / row["image"]))[..., ::-1].astype(float)
        lesion = cv2.imread(str(out / row["lesion_mask"]), cv2.IMREAD_GRAYSCALE) > 127
        edge = lesion ^ cv2.erode(lesion.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        to_edge = cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, 3)
        frame = (cv2.imread(str(out / row["artifact_mask"]), cv2.IMREAD_GRAYSCALE) > 127) if row["artifact_mask"] else None
        masks = {name: cv2.imread(str(out / path), cv2.IMREAD_GRAYSCALE) > 127 for name, path in zip(names, paths) if name}
        painted = {name: mask for name, mask in masks.items() if name != "irregular_border"}
        for on_top in ("globules", "milia_cysts", "hair"):
            if on_top in painted:
                on_top_overlaps.append(any((painted[on_top] & mask).any() for name, mask in painted.items() if name != on_top))
        for name, path in zip(names, paths):
            if not name:
                continue
            assert path == f"_masks/features/{name}/{path.rsplit('/', 1)[-1]}"
            mask = masks[name]
            assert mask.any() and (frame is None or not (mask & frame).any())
            if name == "irregular_border":
                near_edge.append((to_edge[mask] <= 4).mean())
                if row["label"] in edge_cover:
                    edge_cover[row["label"]].append((mask & edge).sum() / edge.sum())
            elif (lesion & ~mask).any():
                d = img[mask].mean(0) - img[lesion & ~mask].mean(0)
                contrast.setdefault(name, []).append((d[2] - d[0], d.mean()))
    mean = {name: np.mean(v, 0) for name, v in contrast.items()}
    assert mean["blue_grey_veil"][0] > 20  # bluer than the rest of the lesion (measured +40)
    assert mean["regression_area"][1] > 15  # whiter (+36)
    assert mean["globules"][1] < -40 and mean["black_area"][1] < -10  # darker (-74, -24)
    assert min(near_edge) > 0.8  # on the lesion's edge (measured >= 0.85 per image)
    assert np.mean(edge_cover["melanoma"]) > np.mean(edge_cover["benign"]) + 0.2  # 0.63 vs 0.24
    assert len(on_top_overlaps) > 20 and not any(on_top_overlaps)
