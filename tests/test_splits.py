import cv2
import numpy as np

from conftest import write_png
from lesionlens.data import read_dataset
from lesionlens.data.duplicates import near_duplicate_pairs
from lesionlens.data.readers import LabeledImages, Sample
from lesionlens.data.scan import scan_dataset
from lesionlens.data.splits import split_dataset


def test_grouped_split_never_puts_a_patient_in_two_splits(synth_small):
    ds = read_dataset(synth_small / "metadata.csv")
    scan = scan_dataset(ds, progress=False)
    result = split_dataset(scan.samples, scan.hashes, val_fraction=0.2, test_fraction=0.2, seed=7)
    split_of_patient = {}
    for s in result.samples:
        split_of_patient.setdefault(s.group, set()).add(s.split)
    assert all(len(v) == 1 for v in split_of_patient.values())
    counts = result.summary()["counts"]
    assert set(counts) == {"train", "val", "test"}
    assert 0.1 < counts["val"] / len(result.samples) < 0.3
    # both classes in every split (stratified)
    for split in ("train", "val", "test"):
        assert {s.label for s in result.samples if s.split == split} == {0, 1}
    # fixed by seed
    again = split_dataset(scan.samples, scan.hashes, val_fraction=0.2, test_fraction=0.2, seed=7)
    assert [s.split for s in again.samples] == [s.split for s in result.samples]
    other = split_dataset(scan.samples, scan.hashes, val_fraction=0.2, test_fraction=0.2, seed=8)
    assert [s.split for s in other.samples] != [s.split for s in result.samples]


def _lesion_like(seed):
    rng = np.random.default_rng(seed)
    img = np.full((96, 96, 3), 200, np.uint8)
    for _ in range(6):
        c = tuple(int(v) for v in rng.integers(10, 86, 2))
        cv2.circle(img, c, int(rng.integers(5, 25)), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    return img


def test_near_duplicates_are_found_and_kept_in_one_split(tmp_path):
    samples = []
    for i in range(40):
        img = _lesion_like(i)
        samples.append(Sample(write_png(tmp_path / f"c{i % 2}" / f"{i}.png", img), i % 2))
    # re-encoded, resized copies of images 0..4 (a "re-upload"): same lesion, other bytes
    for i in range(5):
        small = cv2.resize(_lesion_like(i), (80, 80), interpolation=cv2.INTER_AREA)
        path = tmp_path / f"c{i % 2}" / f"dup{i}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
        samples.append(Sample(path, i % 2))
    ds = LabeledImages(samples, ["a", "b"], str(tmp_path), "folder")
    scan = scan_dataset(ds, progress=False)
    pairs = near_duplicate_pairs(scan.hashes)
    found = {(i, j) for i, j, _ in pairs}
    assert {(i, 40 + i) for i in range(5)} <= found
    assert len(found) <= 7  # unrelated images are not called duplicates
    result = split_dataset(scan.samples, scan.hashes, val_fraction=0.3, seed=0)
    for i in range(5):
        assert result.samples[i].split == result.samples[40 + i].split
    assert result.summary()["cross_split_duplicate_pairs"] == 0


def test_duplicates_across_predefined_splits_are_reported(tmp_path):
    img = _lesion_like(0)
    samples = [Sample(write_png(tmp_path / "train.png", img), 0, split="train"),
               Sample(write_png(tmp_path / "test.png", img), 0, split="test")]
    samples += [Sample(write_png(tmp_path / f"x{i}.png", _lesion_like(100 + i)), i % 2, split="train") for i in range(20)]
    scan = scan_dataset(LabeledImages(samples, ["a", "b"], "x", "folder-with-splits"), progress=False)
    result = split_dataset(scan.samples, scan.hashes, val_fraction=0.2, seed=0)
    assert result.samples[1].split == "test"
    summary = result.summary()
    assert summary["cross_split_duplicate_pairs"] >= 1
    assert summary["held_out_images_with_train_duplicate"] == 1


def test_scan_lists_unreadable_files_and_keeps_the_rest(tmp_path):
    good = write_png(tmp_path / "a" / "good.png", _lesion_like(1))
    (tmp_path / "a" / "empty.png").write_bytes(b"")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "text.jpg").write_text("hello")
    scan = scan_dataset(read_dataset(tmp_path), progress=False)
    assert [s.path for s in scan.samples] == [good]
    reasons = dict(scan.unreadable)
    assert "zero bytes" in reasons[str(tmp_path / "a" / "empty.png")]
    assert "not a recognised image" in reasons[str(tmp_path / "b" / "text.jpg")]
