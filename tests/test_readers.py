import pytest

from conftest import random_rgb, write_png
from lesionlens.data import DatasetError, read_dataset, restrict_to_classes


def _images(folder, names):
    for i, name in enumerate(names):
        write_png(folder / name, random_rgb(i, 16, 16))


def test_class_folders_and_hidden_folders_are_skipped(tmp_path):
    _images(tmp_path / "benign", ["a.png", "b.png"])
    _images(tmp_path / "malignant", ["c.png"])
    _images(tmp_path / "_masks", ["m.png"])
    (tmp_path / "benign" / "notes.txt").write_text("not an image")
    ds = read_dataset(tmp_path)
    assert ds.classes == ["benign", "malignant"] and ds.format == "folder"
    assert ds.counts() == {"benign": 2, "malignant": 1}


def test_kaggle_layout_keeps_predefined_splits(tmp_path):
    root = tmp_path / "melanoma_cancer_dataset"
    _images(root / "train" / "benign", ["a.jpg.png", "b.png"])
    _images(root / "train" / "malignant", ["c.png"])
    _images(root / "test" / "benign", ["d.png"])
    _images(root / "test" / "malignant", ["e.png"])
    ds = read_dataset(root)
    assert ds.format == "folder-with-splits"
    assert sorted(s.split for s in ds.samples) == ["test", "test", "train", "train", "train"]


def test_isic2016_headerless(tmp_path):
    (tmp_path / "gt.csv").write_text("ISIC_0000000,benign\nISIC_0000001,malignant\nISIC_0000002,benign\n")
    _images(tmp_path, ["ISIC_0000000.jpg", "ISIC_0000001.png"])
    ds = read_dataset(tmp_path / "gt.csv")
    assert ds.format == "isic2016" and ds.classes == ["benign", "malignant"]
    assert [s.label for s in ds.samples] == [0, 1, 0]
    assert ds.samples[1].path.name == "ISIC_0000001.png"  # extension found on disk
    assert ds.samples[2].path.name == "ISIC_0000002.jpg"  # missing: the scan will report it


def test_isic2017_three_classes(tmp_path):
    (tmp_path / "gt.csv").write_text(
        "image_id,melanoma,seborrheic_keratosis\nISIC_1,1.0,0.0\nISIC_2,0.0,1.0\nISIC_3,0.0,0.0\n")
    ds = read_dataset(tmp_path / "gt.csv")
    assert ds.format == "isic2017"
    assert [ds.classes[s.label] for s in ds.samples] == ["melanoma", "seborrheic_keratosis", "nevus"]


def test_isic2018_onehot_and_image_root(tmp_path):
    (tmp_path / "gt.csv").write_text(
        "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\nISIC_1,1.0,0,0,0,0,0,0\nISIC_2,0,1.0,0,0,0,0,0\n"
        "ISIC_3,0,0,0,0,0,0,1.0\n")
    ds = read_dataset(tmp_path / "gt.csv", image_root=tmp_path / "images")
    assert ds.format == "isic-onehot" and ds.classes == ["MEL", "NV", "VASC"]
    assert [ds.classes[s.label] for s in ds.samples] == ["MEL", "NV", "VASC"]
    assert ds.samples[0].path.parent == tmp_path / "images"


def test_isic2019_drops_empty_unk_and_rejects_two_labels(tmp_path):
    (tmp_path / "gt.csv").write_text(
        "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\nISIC_1,0,0,1,0,0,0,0,0,0\nISIC_2,0,0,0,0,0,0,0,1,0\n")
    ds = read_dataset(tmp_path / "gt.csv")
    assert ds.classes == ["BCC", "SCC"]
    (tmp_path / "bad.csv").write_text("image,MEL,NV\nISIC_1,1,1\n")
    with pytest.raises(DatasetError, match="2 labels"):
        read_dataset(tmp_path / "bad.csv")


def test_isic2020_groups_by_patient(tmp_path):
    (tmp_path / "train.csv").write_text(
        "image_name,patient_id,sex,age_approx,anatom_site_general_challenge,diagnosis,benign_malignant,target\n"
        "ISIC_1,IP_1,male,45,torso,nevus,benign,0\nISIC_2,IP_1,male,45,torso,melanoma,malignant,1\n"
        "ISIC_3,IP_2,female,50,head,unknown,benign,0\n")
    ds = read_dataset(tmp_path / "train.csv")
    assert ds.format == "isic2020" and ds.classes == ["benign", "malignant"]
    assert [s.group for s in ds.samples] == ["IP_1", "IP_1", "IP_2"]
    assert [s.label for s in ds.samples] == [0, 1, 0]


def test_generic_csv_reads_the_generators_metadata(synth_small):
    ds = read_dataset(synth_small / "metadata.csv")
    folder = read_dataset(synth_small)
    assert ds.format == "generic" and ds.classes == folder.classes == ["benign", "melanoma"]
    assert len(ds.samples) == len(folder.samples) == 120
    assert all(s.path.exists() for s in ds.samples)
    assert len({s.group for s in ds.samples}) < 120  # several images per patient


def test_unknown_csv_empty_and_single_class_are_clear_errors(tmp_path):
    (tmp_path / "odd.csv").write_text("foo,bar,baz\n1,2,3\n")
    with pytest.raises(DatasetError, match="unrecognised CSV columns"):
        read_dataset(tmp_path / "odd.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        read_dataset(tmp_path / "empty").require_trainable()
    _images(tmp_path / "one" / "benign", ["a.png"])
    with pytest.raises(DatasetError, match="only one class"):
        read_dataset(tmp_path / "one").require_trainable()
    with pytest.raises(DatasetError, match="no such file"):
        read_dataset(tmp_path / "nope")


def test_restrict_to_classes_remaps_and_refuses_unknown(tmp_path):
    _images(tmp_path / "melanoma", ["a.png"])
    _images(tmp_path / "benign", ["b.png"])
    ds = restrict_to_classes(read_dataset(tmp_path), ["melanoma", "nevus", "benign"])
    assert sorted(s.label for s in ds.samples) == [0, 2]
    with pytest.raises(DatasetError, match="unknown to the model"):
        restrict_to_classes(read_dataset(tmp_path), ["melanoma", "nevus"])
