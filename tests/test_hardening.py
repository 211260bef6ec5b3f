"""What an attack on the first slice found, each case pinned: data safety, memory, silent or
wrong results, and one-line messages that name the file and the reason."""

import json
import os
import zlib
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import random_rgb, run_cli, write_png
from lesionlens.data import decode_image, read_csv
from lesionlens.errors import DatasetError, ExportError, ImageDecodeError, MetadataError, RunError, one_line

FAST = dict(arch="efficientnet_b0_relu", image_size=32, batch_size=16, progress=False, workers=0)


def _bomb_png(path, side=13000):
    """A small PNG whose header declares side x side RGBA (decoding it would need GBs)."""
    raw = zlib.compress(b"\0" * (side * 4 + 1) * 16)  # a few rows; the header is what matters

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0))
                     + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    return path


def test_checkpoint_pair_survives_a_kill_between_tensors_and_manifest(synth_small, tmp_path, monkeypatch):
    """Killed after the new tensors are on disk but before last.json names them: the previous
    pair is intact, resume works and reproduces the uninterrupted run byte for byte."""
    from lesionlens.training import TrainConfig, train
    from lesionlens.training import checkpoint

    base = dict(data=str(synth_small / "metadata.csv"), epochs=3, **FAST)
    straight = train(TrainConfig(out=str(tmp_path / "straight"), **base))

    class Killed(BaseException):
        pass

    real_write_json, calls = checkpoint.write_json, []

    def write_json_then_die(path, data):
        calls.append(path)
        if len(calls) == 2:  # epoch 2's manifest: its tensor file is already written
            raise Killed()
        return real_write_json(path, data)

    monkeypatch.setattr(checkpoint, "write_json", write_json_then_die)
    with pytest.raises(Killed):
        train(TrainConfig(out=str(tmp_path / "resumed"), **base))
    monkeypatch.setattr(checkpoint, "write_json", real_write_json)
    folder = tmp_path / "resumed" / "checkpoint"
    assert len(list(folder.glob("state-*.safetensors"))) == 2  # epoch 1's (named) and epoch 2's (orphan)
    assert json.loads((folder / "last.json").read_text())["progress"]["epoch"] == 1
    resumed = train(TrainConfig(out=str(tmp_path / "resumed"), resume=True, **base))
    assert len(list(folder.glob("state-*.safetensors"))) == 1  # the orphan was cleaned up
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_failed_export_leaves_the_good_models_in_place(trained_run, tmp_path, monkeypatch):
    from lesionlens.export import ExportOptions, export_run, validate

    out = tmp_path / "onnx"
    export_run(trained_run, out, ExportOptions())
    good = (out / "model.onnx").read_bytes()
    monkeypatch.setitem(validate.BOUNDS, "fp32", (-1.0, 1.0))  # an impossible bound
    with pytest.raises(ExportError, match="left as they were"):
        export_run(trained_run, out, ExportOptions())
    assert (out / "model.onnx").read_bytes() == good
    assert json.loads((out / "validation.json").read_text())["passed"] is True
    assert json.loads((out / "validation.rejected.json").read_text())["passed"] is False
    assert (out / "model.rejected.onnx").exists() and not list(out.glob(".export-*"))


def test_decode_refuses_bombs_from_the_header_and_non_finite_pixels(tmp_path):
    with pytest.raises(ImageDecodeError, match="over the limit"):
        decode_image(_bomb_png(tmp_path / "bomb.png"))
    nan = Image.fromarray(np.full((16, 16), np.nan, dtype=np.float32), mode="F")
    nan.save(tmp_path / "nan.tif")
    with pytest.raises(ImageDecodeError, match="non-finite"):
        decode_image(tmp_path / "nan.tif")


def test_large_jpegs_decode_at_reduced_scale_but_never_below_the_size_asked(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (2000, 3000, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "big.jpg", quality=90)
    assert decode_image(tmp_path / "big.jpg").shape == (2000, 3000, 3)
    reduced = decode_image(tmp_path / "big.jpg", reduce_to=224)
    assert min(reduced.shape[:2]) >= 224 and reduced.shape[0] <= 500  # 1/4 or 1/8 scale, not full


def test_paths_say_exactly_why_they_cannot_be_read(tmp_path):
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    with pytest.raises(ImageDecodeError, match="symbolic link loop"):
        decode_image(tmp_path / "a")
    os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
    with pytest.raises(ImageDecodeError, match="dangling symbolic link"):
        decode_image(tmp_path / "dangling.png")
    newline = tmp_path / "two\nlines.png"
    newline.write_bytes(b"not a png")
    with pytest.raises(ImageDecodeError) as info:
        decode_image(newline)
    assert "\n" not in str(info.value) and "two\\nlines.png" in str(info.value)
    assert one_line("a\nb\tc") == "a\\nb\\tc"


def test_permission_denied_is_not_reported_as_corrupt(tmp_path, monkeypatch):
    """Tests run as root, which reads any file: the refusal is simulated where the decoder asks."""
    path = write_png(tmp_path / "locked.png", random_rgb(4))
    monkeypatch.setattr(os, "access", lambda p, mode: False)
    with pytest.raises(ImageDecodeError, match="permission denied"):
        decode_image(path)


@pytest.mark.parametrize("content,needle", [
    ("image,label\na.png,benign\nb.png,\nc.png,melanoma\n", "empty or NaN label: line 3"),
    ("image,label\na.png,benign\nb.png,NaN\nc.png,melanoma\n", "line 3"),
    ("image_name,patient_id,target\na,p1,0\nb,p2,maybe\nc,p3,1\n", "not 0/1: line 3 ('maybe')"),
    ("image,label\na.png,benign\nb.png\n", "fewer than the header's 2 columns: line 3"),
])
def test_bad_labels_are_errors_naming_file_and_lines(tmp_path, content, needle):
    path = tmp_path / "gt.csv"
    path.write_text(content)
    with pytest.raises(DatasetError) as info:
        read_csv(path)
    assert str(path) in str(info.value) and needle in str(info.value)


def test_csv_encoding_and_huge_fields_name_the_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("image,label\na.png,benign\nb.png,nævus\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="line 3: not UTF-8"):
        read_csv(path)
    path = tmp_path / "huge.csv"
    path.write_text("image,label\n" + "a.png," + '"' + "x" * 200_000 + '"\n')
    with pytest.raises(DatasetError, match="line 2"):
        read_csv(path)


def test_train_with_unreadable_images_exits_1_like_evaluate(synth_small, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth_small, data, ignore=shutil.ignore_patterns("_masks", "metadata.csv"))
    (data / "melanoma" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = run_cli("train", "--data", str(data), "--arch", "efficientnet_b0_relu", "--out", str(tmp_path / "run"),
                     "--epochs", "1", "--image-size", "32", "--batch-size", "16", "--quiet")
    assert result.returncode == 1, result.stderr
    assert "1 unreadable image(s) were skipped" in result.stderr


def test_weights_that_do_not_fit_get_one_line_naming_the_file(trained_run, tmp_path):
    import shutil

    from lesionlens.training import load_run

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    meta = json.loads((run / "model.json").read_text())
    meta["arch"] = "resnet50"  # the weights are an efficientnet's
    (run / "model.json").write_text(json.dumps(meta))
    with pytest.raises(RunError, match=r"do not fit a resnet50: \d+ tensor\(s\) missing") as info:
        load_run(run)
    assert len(str(info.value).splitlines()) == 1 and "model.safetensors" in str(info.value)
    del meta["arch"]
    (run / "model.json").write_text(json.dumps(meta))
    with pytest.raises(RunError, match=r"missing \['arch'\]"):
        load_run(run)
    meta["arch"], meta["format_version"] = "efficientnet_b0_relu", 99
    (run / "model.json").write_text(json.dumps(meta))
    with pytest.raises(RunError, match="format version 99"):
        load_run(run)
    meta["format_version"] = 2
    (run / "model.json").write_text(json.dumps(meta))
    (run / "model.safetensors").write_bytes((trained_run / "model.safetensors").read_bytes()[:1000])
    meta["weights_sha256"] = __import__("hashlib").sha256((run / "model.safetensors").read_bytes()).hexdigest()
    (run / "model.json").write_text(json.dumps(meta))
    with pytest.raises(RunError, match="not a readable safetensors file"):
        load_run(run)


def test_onnx_metadata_that_contradicts_the_graph_is_refused(exported, tmp_path):
    from conftest import tampered_onnx
    from lesionlens.runtime import Classifier

    def tampered(name, key, value):
        return tampered_onnx(exported / "model.onnx", tmp_path / name, key, value)

    cases = {
        "three.onnx": ("classes", json.dumps(["benign", "melanoma", "nevus"]), "outputs 2 class probabilities"),
        "one.onnx": ("classes", json.dumps(["a"]), "classes must list >= 2"),
        "index.onnx": ("flag_policy", json.dumps({"positive_class": "melanoma", "positive_index": 5,
                                                  "threshold": 0.5}), "out of range"),
        "string.onnx": ("flag_policy", json.dumps({"positive_class": "melanoma", "positive_index": 1,
                                                   "threshold": "0.5"}), "threshold must be a number"),
        "size.onnx": ("preprocessing", json.dumps({"size": 64}), "does not take 64x64"),
    }
    for name, (key, value, needle) in cases.items():
        with pytest.raises(MetadataError, match=needle):
            Classifier(tampered(name, key, value))
        result = run_cli("predict", str(tmp_path / name), str(exported / "model.onnx"))
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr


def test_predict_gives_every_entry_of_a_folder_a_row(exported, tmp_path):
    folder = tmp_path / "in"
    write_png(folder / "ok.png", random_rgb(1, 40, 40))
    Image.fromarray(random_rgb(2, 40, 40)).save(folder / "anim.gif")
    (folder / "photo.heic").write_bytes(b"\0\0\0\x18ftypheic" + b"\0" * 64)
    os.symlink(folder / "nowhere.png", folder / "dangling.png")
    os.symlink(folder / "loop_b.jpg", folder / "loop_a.jpg")
    os.symlink(folder / "loop_a.jpg", folder / "loop_b.jpg")
    (folder / "notes.txt").write_text("not an image")
    (folder / "_masks").mkdir()
    write_png(folder / "_masks" / "m.png", random_rgb(3, 40, 40))
    out = tmp_path / "p.csv"
    result = run_cli("predict", str(exported / "model.onnx"), str(folder), "--out", str(out), "--quiet")
    assert result.returncode == 1, result.stderr
    import csv

    rows = {os.path.basename(r["path"]): r for r in csv.DictReader(out.open())}
    assert set(rows) == {"ok.png", "anim.gif", "photo.heic", "dangling.png", "loop_a.jpg", "loop_b.jpg"}
    assert rows["ok.png"]["error"] == "" and rows["anim.gif"]["error"] == ""
    assert "HEIC images cannot be decoded" in rows["photo.heic"]["error"]
    assert "dangling symbolic link" in rows["dangling.png"]["error"]
    assert "symbolic link loop" in rows["loop_a.jpg"]["error"]
    assert "not images" in result.stderr  # notes.txt is reported as passed over, not silently lost
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("predict", str(exported / "model.onnx"), str(empty))
    assert result.returncode == 2 and "no images found" in result.stderr


def test_internal_errors_have_their_own_exit_code(monkeypatch, capsys):
    from lesionlens import cli

    def broken(args):
        raise KeyError("boom")

    monkeypatch.setattr(cli, "_cmd_synth", broken)
    assert cli.main(["synth", "/tmp/unused"]) == cli.EXIT_INTERNAL == 3
    err = capsys.readouterr().err
    assert "internal error" in err and "--debug" in err and len(err.strip().splitlines()) == 1


def test_explain_cli_bounds_concepts(trained_run, synth_small, tmp_path):
    image = next((synth_small / "melanoma").glob("*.png"))
    for bad in ("0", "100000"):
        result = run_cli("explain", str(trained_run), str(image), "--method", "crp", "--concepts", bad,
                         "--out", str(tmp_path / "h.png"))
        assert result.returncode == 2 and "--concepts: must be a whole number from 1 to 64" in result.stderr
    assert not list(tmp_path.iterdir())
