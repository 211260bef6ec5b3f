import io
import json
import threading

import numpy as np
import pytest
from PIL import Image

from conftest import assert_runs_without_heavy_imports, random_rgb, run_cli, write_png
from lesionlens.runtime import Classifier, FlagPolicy, MetadataError, ProviderFallbackWarning
from lesionlens.runtime.providers import cuda_usable


def test_import_runtime_and_predict_without_torch(exported, synth_small):
    image = next((synth_small / "melanoma").glob("*.png"))
    assert_runs_without_heavy_imports(
        "import lesionlens.runtime as r; "
        f"p = r.Classifier({str(exported / 'model.onnx')!r}).predict([{str(image)!r}])[0]; "
        "assert p.ok and abs(sum(p.probabilities.values()) - 1) < 1e-5, p"
    )


def test_runtime_matches_pytorch_on_real_images(exported, trained_run, synth_small):
    import torch

    from lesionlens.data import decode_image, preprocess
    from lesionlens.training import load_run

    model, meta = load_run(trained_run)
    paths = sorted((synth_small / "melanoma").glob("*.png"))[:6] + sorted((synth_small / "benign").glob("*.png"))[:6]
    with torch.no_grad():
        x = torch.from_numpy(np.stack([preprocess(decode_image(p), meta.preprocessing) for p in paths]))
        reference = torch.softmax(model(x), 1).numpy()
    for variant in ("model.onnx", "model.uint8.onnx"):
        predictions = Classifier(exported / variant, providers="cpu", max_batch=5).predict(paths)
        got = np.array([[p.probabilities[c] for c in meta.classes] for p in predictions])
        assert np.abs(got - reference).max() <= 1e-4, variant
        threshold = meta.decision_threshold
        # the runtime flags by its own probabilities; where PyTorch's are clear of the threshold
        # (by more than the 1e-4 the two may differ), the decisions agree too (this briefly
        # trained model's probabilities lie within 1e-3 of each other, so some are not clear)
        assert [p.flagged for p in predictions] == list(got[:, 1] >= threshold)
        clear = np.abs(reference[:, 1] - threshold) > 1e-4
        assert [p.flagged for p, c in zip(predictions, clear) if c] == list(reference[clear, 1] >= threshold)


def test_provider_choice_and_fallback_warning(exported):
    if cuda_usable():
        assert Classifier(exported / "model.onnx", providers="cuda").provider == "CUDAExecutionProvider"
    else:
        with pytest.warns(ProviderFallbackWarning, match="running on CPU"):
            clf = Classifier(exported / "model.onnx", providers="cuda")
        assert clf.provider == "CPUExecutionProvider"
    assert Classifier(exported / "model.onnx", providers="cpu").provider == "CPUExecutionProvider"
    with pytest.raises(ValueError, match="unknown provider"):
        Classifier(exported / "model.onnx", providers="gpu")


def test_one_session_shared_by_8_threads(exported, synth_small):
    clf = Classifier(exported / "model.onnx", providers="cpu", max_batch=4)
    paths = sorted(synth_small.rglob("img_*.png"))[:24]
    expected = [p.probabilities for p in clf.predict(paths)]
    results, errors = {}, []

    def worker(k):
        try:
            order = paths[k:] + paths[:k]  # each thread its own order and batch boundaries
            got = {p.source: p.probabilities for p in clf.predict(order)}
            results[k] = [got[str(p)] for p in paths]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 8
    for got in results.values():
        for a, b in zip(got, expected):
            assert all(abs(a[c] - b[c]) < 1e-6 for c in a)


def test_inputs_may_be_bytes_arrays_and_bad_arrays_are_reported(exported, synth_small):
    clf = Classifier(exported / "model.onnx", providers="cpu")
    path = next((synth_small / "benign").glob("*.png"))
    from lesionlens.data import decode_image

    by_path, by_bytes, by_array, bad = clf.predict([path, path.read_bytes(), decode_image(path), np.zeros((4, 4), np.float32)])
    assert by_path.probabilities == by_bytes.probabilities == by_array.probabilities
    assert not bad.ok and "RGB uint8" in bad.error
    # the single-image form raises instead of returning an error row
    from lesionlens.data.decode import ImageDecodeError

    assert clf.predict_one(path.read_bytes()).probabilities == by_path.probabilities
    with pytest.raises(ImageDecodeError, match="RGB uint8"):
        clf.predict_one(np.zeros((4, 4), np.float32))


def _bad_and_odd_inputs(folder):
    good = {
        "rgb.png": lambda p: write_png(p, random_rgb(0, 80, 90)),
        "gray.png": lambda p: Image.fromarray(random_rgb(1, 40, 40)[:, :, 0]).save(p),
        "rgba.png": lambda p: Image.fromarray(np.dstack([random_rgb(2, 40, 40), np.full((40, 40), 128, np.uint8)])).save(p),
        "deep16.png": lambda p: Image.fromarray((np.arange(1600).reshape(40, 40) * 40).astype(np.uint16)).save(p),
        "photo.jpg": lambda p: Image.fromarray(random_rgb(3, 60, 60)).save(p, quality=90),
    }
    bad = {
        "zero.jpg": ("zero bytes", lambda p: p.write_bytes(b"")),
        "truncated.jpg": ("truncated", None),
        "text.jpg": ("not a recognised image", lambda p: p.write_text("I am a text file")),
        "one_pixel.png": ("only 1x1", lambda p: Image.new("RGB", (1, 1)).save(p)),
        "huge.png": ("decompression bomb", lambda p: Image.new("1", (20000, 20000)).save(p)),
    }
    for name, make in good.items():
        make(folder / name)
    buf = io.BytesIO()
    Image.fromarray(random_rgb(4, 64, 64)).save(buf, "JPEG")
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[:300])
    for name, (_, make) in bad.items():
        if make:
            make(folder / name)
    return set(good), {name: reason for name, (reason, _) in bad.items()}


def test_predict_cli_one_row_per_input_with_error_rows(exported, tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    good, bad = _bad_and_odd_inputs(folder)
    write_png(folder / "_masks" / "mask.png", random_rgb(9, 20, 20))  # skipped, like the dataset reader
    missing = str(tmp_path / "missing.png")
    out = tmp_path / "results.csv"
    result = run_cli("predict", str(exported / "model.onnx"), str(folder), missing, "--out", str(out), "--quiet")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    import csv

    rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(out.open())}
    assert set(rows) == good | set(bad) | {"missing.png"}
    for name in good:
        assert rows[name]["error"] == "" and rows[name]["label"] in ("benign", "melanoma")
        assert abs(float(rows[name]["prob_benign"]) + float(rows[name]["prob_melanoma"]) - 1) < 1e-4
    for name, reason in bad.items():
        assert reason in rows[name]["error"] and rows[name]["label"] == "", (name, rows[name])
        assert reason in result.stderr
    assert rows["missing.png"]["error"] == "file not found"
    # JSON lines and a quoted glob; all good -> exit 0
    out_jsonl = tmp_path / "r.jsonl"
    result = run_cli("predict", str(exported / "model.onnx"), str(folder / "*.png"), "--out", str(out_jsonl), "--quiet")
    assert result.returncode == 1  # one_pixel.png and huge.png are among the matches
    lines = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    assert {line["source"].rsplit("/", 1)[-1] for line in lines} == {"rgb.png", "gray.png", "rgba.png", "deep16.png", "one_pixel.png", "huge.png"}
    result = run_cli("predict", str(exported / "model.onnx"), str(folder / "rgb.png"), str(folder / "photo.jpg"), "--quiet")
    assert result.returncode == 0 and result.stdout.startswith("path,label,prob_benign")
    # the ISIC submission layout: image without extension, one probability column per class;
    # the bad inputs are named on stderr (they have no row in that layout)
    out_isic = tmp_path / "submission.csv"
    result = run_cli("predict", str(exported / "model.onnx"), str(folder), missing, "--out", str(out_isic),
                     "--format", "isic", "--quiet")
    assert result.returncode == 1 and "missing.png" in result.stderr
    isic_rows = list(csv.DictReader(out_isic.open()))
    assert list(isic_rows[0]) == ["image", "benign", "melanoma"]
    assert {r["image"] for r in isic_rows} == {name.rsplit(".", 1)[0] for name in good}
    for r in isic_rows:
        assert abs(float(r["benign"]) + float(r["melanoma"]) - 1) < 1e-4


def test_predict_cli_usage_errors_exit_2(tmp_path, exported):
    result = run_cli("predict", str(tmp_path / "nope.onnx"), "x.png")
    assert result.returncode == 2 and "model file not found" in result.stderr
    import onnx

    bare = onnx.load(str(exported / "model.onnx"))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(MetadataError, match="missing lesionlens metadata"):
        Classifier(tmp_path / "bare.onnx")
    result = run_cli("predict", str(tmp_path / "bare.onnx"), "x.png")
    assert result.returncode == 2 and "lesionlens export" in result.stderr and "Traceback" not in result.stderr


def test_flag_policy_positive_and_uncertain():
    policy = FlagPolicy("melanoma", 1, 0.3, min_confidence=0.6)
    probs = np.array([[0.9, 0.1], [0.65, 0.35], [0.55, 0.45], [0.2, 0.8]])
    assert policy.reasons(probs) == ["", "positive", "positive+uncertain", "positive"]
    assert FlagPolicy(None, None, None, 0.5).reasons(np.array([[0.4, 0.35, 0.25], [0.8, 0.1, 0.1]])) == ["uncertain", ""]


def test_predict_command_never_imports_torch(exported, synth_small):
    image = next((synth_small / "benign").glob("*.png"))
    assert_runs_without_heavy_imports(
        "from lesionlens.cli import main; "
        f"rc = main(['predict', {str(exported / 'model.onnx')!r}, {str(image)!r}, '--quiet']); "
        "assert rc == 0, rc"
    )
