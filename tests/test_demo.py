"""The Gradio demo, launched in-process on a free port and driven through gradio_client as a
user's script would: /predict, /explain, a bad upload, 8 concurrent explanations, the model
card, the ring warning, and no server path of the run or its data in the page's config."""

import socket
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo(exported, trained_run):
    from lesionlens.demo.app import launch

    port = free_port()
    app = launch(exported / "model.onnx", trained_run, port=port, device="cpu", block=False)
    yield f"http://127.0.0.1:{port}/", app
    app.close()


@pytest.fixture(scope="module")
def client(demo):
    from gradio_client import Client

    return Client(demo[0], verbose=False)


def test_predict_endpoint_gives_probabilities_and_the_flag_state(client, synth_small):
    from gradio_client import handle_file

    image = next((synth_small / "melanoma").glob("*.png"))
    label, status, flagged = client.predict(handle_file(str(image)), api_name="/predict")
    confidences = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert set(confidences) == {"benign", "melanoma"} and abs(sum(confidences.values()) - 1) < 1e-4
    assert ("FLAGGED" in status) == flagged and "flagged at >=" in status


def test_explain_endpoint_returns_the_figure_and_concepts(client, synth_small):
    from gradio_client import handle_file
    from PIL import Image

    image = next((synth_small / "benign").glob("*.png"))
    figure, gallery, note = client.predict(handle_file(str(image)), "lrp", 4, api_name="/explain")
    assert np.asarray(Image.open(figure)).shape[0] >= 384 and "Red = evidence for" in note
    assert "Concepts shown" not in note
    figure, gallery, note = client.predict(handle_file(str(image)), "crp", 3, api_name="/explain")
    assert len(gallery) >= 3  # one conditional heatmap per concept (+ atlas patches when there is an atlas)
    assert "Concepts shown: the channels with the largest share" in note  # EfficientNet's choice: top


def test_bad_upload_gets_a_readable_message(client, tmp_path):
    from gradio_client import handle_file

    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    with pytest.raises(Exception) as info:
        client.predict(handle_file(str(bad)), api_name="/predict")
    message = str(info.value)
    assert "cannot be classified" in message and "Traceback" not in message
    with pytest.raises(Exception) as info:
        client.predict(handle_file(str(bad)), "lrp", 4, api_name="/explain")
    assert "cannot be explained" in str(info.value)


def test_eight_concurrent_explanations_all_answer(demo, synth_small):
    from gradio_client import Client, handle_file

    images = sorted((synth_small / "melanoma").glob("*.png"))[:8]

    def one(path):
        return Client(demo[0], verbose=False).predict(handle_file(str(path)), "lrp", 4, api_name="/explain")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, images))
    assert len(results) == 8 and all(r[0] and "Red = evidence for" in r[2] for r in results)


def test_ring_warning_and_model_card(client, demo, trained_run, synth_small, tmp_path):
    from gradio_client import handle_file

    from lesionlens.data.synth import generate

    generate(tmp_path / "ring", n=12, size=64, seed=3, artifact="ring", artifact_rate=1.0, artifact_rate_other=1.0,
             progress=False)
    ring_image = next(p for p in (tmp_path / "ring").rglob("img_*.png") if "_masks" not in p.parts)
    _, status, _ = client.predict(handle_file(str(ring_image)), api_name="/predict")
    assert "Microscope ring detected" in status
    clean_image = next((synth_small / "benign").glob("*.png"))
    assert "Microscope ring" not in client.predict(handle_file(str(clean_image)), api_name="/predict")[1]
    config = urllib.request.urlopen(demo[0] + "config").read().decode()
    assert "Decision threshold" in config and "majority baseline" in config
    assert str(trained_run) not in config and str(synth_small) not in config  # no server path of the run or data


def test_demo_cli_refuses_a_mismatched_run_in_one_line(exported, tmp_path):
    from conftest import run_cli, write_random_run

    other = write_random_run(tmp_path / "other", "resnet50")
    result = run_cli("demo", "--model", str(exported / "model.onnx"), "--run", str(other), timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_real_browser_uploads_explains_and_sees_the_heatmap(demo, synth_small, tmp_path):
    """Debian's chromium driven by Playwright (tests/demo_browser.py): load the page, upload an
    image, click Explain, and wait for the heatmap image. .ci/run installs chromium and sets
    LESIONLENS_REQUIRE_BROWSER=1, so in CI a missing browser fails this test instead of skipping
    it. The README's screenshot is made by the same code (demo_browser.py's __main__)."""
    import os

    from demo_browser import chromium_path, concept_gallery, upload_and_explain

    if chromium_path() is None:
        if os.environ.get("LESIONLENS_REQUIRE_BROWSER"):
            pytest.fail("chromium not found (apt-get install chromium)")
        pytest.skip("chromium not installed (.ci/run installs it)")
    image = sorted((synth_small / "melanoma").glob("*.png"))[0]
    shot = tmp_path / "demo.png"
    assert upload_and_explain(demo[0], image, shot) >= 384
    assert shot.stat().st_size > 10_000
    # the concept gallery shows each figure whole (title, colour bar and its words), not a crop,
    # and wide enough to read: a thumbnail's default "cover" cut them; at its own shape, not in a
    # square cell between grey bands; and all of them on the page, not in a 550-px box that
    # never held one whole figure; each caption below its figure (Gradio lays it over the figure's
    # corner)
    figures = concept_gallery(demo[0], image, tmp_path / "concepts.png")
    assert len(figures) >= 4, figures
    for figure in figures:
        assert figure["fit"] == "contain", figure
        assert figure["shown"][0] >= 0.6 * min(figure["natural"][0], 700), figure
        (width, height), (shown_width, shown_height) = figure["natural"], figure["shown"]
        assert abs(shown_height / shown_width - height / width) < 0.02, figure
        assert figure["hidden"] <= 1, figure
        assert figure["caption_over"] is not None and figure["caption_over"] <= 1, figure  # below, not over it
