"""Every command, the same contract (the second attack's findings 7-13): a model that cannot be
served is never exported, a model that cannot compute never answers "not flagged", an empty
audit is not a clean bill, a missing mask costs its image's localisation and nothing else,
bad images are exit 1 everywhere, every argument's range is checked where it is parsed, and
the servers refuse exposure and slow or unauthorised requests early."""

import json
import shutil
import socket
import time

import numpy as np
import pytest

from conftest import random_rgb, run_cli, tampered_onnx


# ---- 7, 8: one folder, one model that can answer ---------------------------------------------

@pytest.mark.parametrize("value", ["2", "nan", "-0.1"])
def test_an_export_the_runtime_could_not_load_is_refused_before_anything_is_built(trained_run, tmp_path, value):
    from lesionlens.errors import UsageError
    from lesionlens.export import ExportOptions

    out = tmp_path / "onnx"
    result = run_cli("export", str(trained_run), "--out", str(out), "--flag-uncertain-below", value)
    assert result.returncode == 2 and "--flag-uncertain-below" in result.stderr and not out.exists()
    with pytest.raises(UsageError, match="--flag-uncertain-below must be a finite number from 0 to 1"):
        ExportOptions(min_confidence=float(value))


def test_a_nan_preprocessing_mean_is_refused_and_nan_probabilities_are_error_rows(exported, tmp_path, monkeypatch):
    from lesionlens.errors import MetadataError
    from lesionlens.runtime import Classifier

    spec = json.dumps({"size": 32, "mean": [float("nan"), 0.4, 0.4], "std": [0.2, 0.2, 0.2]})
    with pytest.raises(MetadataError, match="three finite numbers"):
        Classifier(tampered_onnx(exported / "model.onnx", tmp_path / "tampered.onnx", "preprocessing", spec))
    result = run_cli("predict", str(tmp_path / "tampered.onnx"), str(tmp_path))
    assert result.returncode == 2 and "finite" in result.stderr and "Traceback" not in result.stderr
    # and should a model still compute NaN (a corrupt graph), the answer is an error, never "not flagged"
    clf = Classifier(exported / "model.onnx")
    real = clf.run

    def nan_for_the_first(batch):
        logits, probs = real(batch)
        probs[0] = np.nan
        return logits, probs

    monkeypatch.setattr(clf, "run", nan_for_the_first)
    first, second = clf.predict([random_rgb(0, 64, 64), random_rgb(1, 64, 64)])
    assert first.error and "non-finite" in first.error and not first.flagged and first.label is None
    assert second.ok


# ---- 9, 10, 11: empty, missing masks, bad images --------------------------------------------

def test_an_empty_audit_is_a_usage_error(tmp_path):
    (tmp_path / "empty" / "benign").mkdir(parents=True)
    (tmp_path / "header.csv").write_text("image,label\n")
    for data in (tmp_path / "empty", tmp_path / "header.csv"):
        result = run_cli("audit", "--data", str(data), "--out", str(tmp_path / "out"), "--quiet")
        assert result.returncode == 2 and "no images" in result.stderr, result.stderr
        assert not (tmp_path / "out" / "audit.json").exists()


@pytest.fixture(scope="module")
def broken_masks(synth_small, tmp_path_factory):
    """synth_small with one lesion mask missing, one not an image, one a decompression bomb,
    and one image that does not decode."""
    from test_hardening import _bomb_png

    data = tmp_path_factory.mktemp("masks") / "data"
    shutil.copytree(synth_small, data)
    masks = sorted((data / "_masks" / "lesion").glob("*.png"))
    masks[0].unlink()
    masks[1].write_bytes(b"not a png")
    _bomb_png(masks[2])
    next((data / "benign").glob("*.png")).write_bytes(b"\x89PNG broken")
    return data, [m.name for m in masks[:3]]


def test_explain_eval_scores_images_whose_masks_are_broken_and_names_the_masks(trained_run, broken_masks, tmp_path):
    data, broken = broken_masks
    out = tmp_path / "eval"
    result = run_cli("explain-eval", str(trained_run), "--data", str(data / "metadata.csv"), "--out", str(out),
                     "--n", "200", "--methods", "gradient,random", "--sensitivity-n", "0", "--quiet")
    assert result.returncode == 1, result.stderr  # the broken image: partial
    report = json.loads((out / "explain_eval.json").read_text())
    assert report["n"] == 119 and report["skipped"] == 1  # every image but the one that does not decode
    named = {p["image"].rsplit("/", 1)[1] for p in report["mask_problem_list"]}
    assert set(broken) <= named and len(report["mask_problem_list"]) == 3
    reasons = " ".join(p["reason"] for p in report["mask_problem_list"])
    assert "file not found" in reasons and "not a recognised image" in reasons and "over the limit" in reasons
    assert report["methods"]["gradient"]["metrics"]["mass_accuracy_lesion"]["n"] == 116  # localisation without them
    assert "Masks that could not be read" in (out / "explain_eval.md").read_text()
    for name in broken:
        assert name in result.stderr


def test_model_audit_with_broken_masks_audits_every_readable_image(trained_run, broken_masks, tmp_path):
    data, broken = broken_masks
    out = tmp_path / "audit"
    result = run_cli("audit", "--data", str(data / "metadata.csv"), "--run", str(trained_run), "--out", str(out),
                     "--n", "200", "--quiet", timeout=900)
    assert result.returncode == 1, result.stderr
    report = json.loads((out / "audit.json").read_text())
    relevance = next(f for f in report["findings"] if f["kind"] == "artifact_relevance")
    assert "could not be read" in relevance["evidence"]["regions"]
    assert sum(f["kind"] == "unreadable_mask" for f in report["findings"]) == 3
    assert all(f"spray_{k}-" in name or name.startswith("counterfactual_") for name in report["figures"]
               for k in (0, 1) if name.startswith(f"spray_{k}"))


def test_atlas_skips_bad_images_refuses_unknown_layers_and_keeps_a_good_atlas(trained_run, synth_small, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("concept_atlas", "explain_eval", "audit"))
    data = tmp_path / "data"
    shutil.copytree(synth_small, data)
    bad = next((data / "melanoma").glob("*.png"))
    bad.write_bytes(b"broken")
    result = run_cli("atlas", str(run), "--data", str(data / "metadata.csv"), "--max-images", "20",
                     "--batch-size", "8")
    assert result.returncode == 1 and bad.name in result.stderr, result.stderr
    index = json.loads((run / "concept_atlas" / "atlas.json").read_text())
    assert len(index["images"]) == 19 and index["unreadable"][0]["path"].endswith(bad.name)
    result = run_cli("atlas", str(run), "--layer", "bogus")
    assert result.returncode == 2 and "is not a concept layer" in result.stderr
    assert json.loads((run / "concept_atlas" / "atlas.json").read_text()) == index  # the good one stays
    for bad_size in ("0", "-3"):
        assert run_cli("atlas", str(run), "--batch-size", bad_size).returncode == 2


# ---- 12: every argument's range where it is parsed -------------------------------------------

@pytest.mark.parametrize("args, flag", [
    (["export", "RUN", "--out", "OUT", "--opset", "5"], "--opset"),
    (["export", "RUN", "--out", "OUT", "--opset", "99"], "--opset"),
    (["atlas", "RUN", "--batch-size", "0"], "--batch-size"),
    (["train", "--data", "D", "--out", "OUT", "--batch-size", "0"], "--batch-size"),
    (["train", "--data", "D", "--out", "OUT", "--lr", "nan"], "--lr"),
    (["train", "--data", "D", "--out", "OUT", "--epochs", "0"], "--epochs"),
    (["train", "--data", "D", "--out", "OUT", "--target-sensitivity", "2"], "--target-sensitivity"),
    (["demo", "--model", "M", "--run", "RUN", "--port", "99999"], "--port"),
    (["serve", "--model", "M", "--run", "RUN", "--port", "0"], "--port"),
    (["report", "--run", "RUN", "--data", "D", "--out", "OUT", "--gallery", "-1"], "--gallery"),
    (["synth", "OUT", "--artifact-rate", "1.5"], "--artifact-rate"),
    (["predict", "M", "x.png", "--batch-size", "0"], "--batch-size"),
    (["explain-eval", "RUN", "--data", "D", "--n", "0"], "--n"),
])
def test_out_of_range_arguments_are_usage_errors_before_any_work(args, flag, tmp_path):
    result = run_cli(*[str(tmp_path / a) if a in ("RUN", "OUT", "D", "M") else a for a in args], timeout=60)
    assert result.returncode == 2 and f"argument {flag}: must be" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "OUT").exists()


def test_train_config_checks_its_ranges_for_python_callers_too():
    from lesionlens.errors import UsageError
    from lesionlens.training import TrainConfig

    with pytest.raises(UsageError, match="--lr must be a finite number > 0"):
        TrainConfig(data="d", arch="resnet50", out="o", lr=float("nan"))
    with pytest.raises(UsageError, match="leave nothing to train on"):
        TrainConfig(data="d", arch="resnet50", out="o", val_fraction=0.5, test_fraction=0.5)


def test_a_failing_report_cell_is_one_line_without_terminal_colours(trained_run, tmp_path):
    from lesionlens.report import ReportError, build_report

    with pytest.raises(ReportError) as caught:
        build_report([trained_run], tmp_path / "no-such-data-but-exists", tmp_path / "out",
                     template=_failing_template(tmp_path))
    message = str(caught.value)
    assert "ZeroDivisionError" in message and "\x1b[" not in message and "\n" not in message


def _failing_template(tmp_path):
    import nbformat

    (tmp_path / "no-such-data-but-exists").mkdir()
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("RUNS = []", metadata={"tags": ["parameters"]}),
                      nbformat.v4.new_code_cell("1 / 0")]
    path = tmp_path / "template.ipynb"
    nbformat.write(notebook, str(path))
    return path


# ---- 13: exposure, tokens before bodies, slow headers ------------------------------------------

def test_the_demo_is_not_exposed_without_a_password_unless_asked(exported, trained_run):
    for extra in (["--host", "0.0.0.0"], ["--share"]):
        result = run_cli("demo", "--model", str(exported / "model.onnx"), "--run", str(trained_run), *extra,
                         timeout=60)
        assert result.returncode == 2 and "--auth" in result.stderr and "--public" in result.stderr, result.stderr
    from lesionlens.demo.app import check_exposure

    check_exposure("0.0.0.0", False, "user:pass", False)  # with a password: allowed
    check_exposure("0.0.0.0", False, None, True)  # said in so many words: allowed
    check_exposure("127.0.0.1", False, None, False)


@pytest.fixture(scope="module")
def guarded_sidecar(exported, trained_run):
    """A real uvicorn server with a token, the header timeout shortened for the test."""
    import threading

    import uvicorn

    from lesionlens.sidecar.guards import HeaderTimeoutProtocol
    from lesionlens.sidecar.server import create_app
    from lesionlens.sidecar.service import ExplanationService

    class Quick(HeaderTimeoutProtocol):
        header_timeout = 1.5

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    service = ExplanationService(exported / "model.onnx", trained_run, device="cpu")
    config = uvicorn.Config(create_app(service, token="s3cret"), host="127.0.0.1", port=port, log_level="warning",
                            http=Quick)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def _exchange(port, request: bytes, wait: float = 10.0) -> tuple[bytes, float]:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as conn:
        conn.sendall(request)
        reply = b""
        try:
            while chunk := conn.recv(4096):
                reply += chunk
        except socket.timeout:
            pass
    return reply, time.perf_counter() - started


def test_a_request_without_the_token_is_refused_before_its_body_is_read(guarded_sidecar):
    head = (b"POST /explain HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 20000000\r\n\r\n")  # 20 MB announced, none of it sent
    reply, seconds = _exchange(guarded_sidecar, head)
    assert reply.startswith(b"HTTP/1.1 401") and b"bearer token" in reply and seconds < 5


def test_a_half_sent_request_header_is_closed_after_the_timeout(guarded_sidecar):
    reply, seconds = _exchange(guarded_sidecar, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    assert reply == b"" and 1.0 < seconds < 8, seconds  # closed by the server, not by our 10 s wait
    reply, seconds = _exchange(guarded_sidecar, b"")  # a connection that never says anything
    assert reply == b"" and seconds < 8
    ok, _ = _exchange(guarded_sidecar, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer s3cret\r\n"
                                       b"Connection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200")
