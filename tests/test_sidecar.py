import base64
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import run_cli
from lesionlens.explain.service import ExplanationService, HashMismatchError


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(exported, trained_run):
    import uvicorn

    from lesionlens.explain.atlas import build_atlas
    from lesionlens.explain.server import create_app

    if not (trained_run / "concept_atlas" / "atlas.json").exists():
        build_atlas(trained_run, max_images=24, batch_size=8)
    service = ExplanationService(exported / "model.onnx", trained_run, device="cpu", max_upload_bytes=2_000_000)
    port = _free_port()
    config = uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not instance.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", service
    instance.should_exit = True
    thread.join(timeout=10)


def _image(synth_small):
    return next((synth_small / "melanoma").glob("*.png")).read_bytes()


def test_refuses_weights_that_are_not_the_onnx_models(exported, trained_run, tmp_path):
    other = tmp_path / "other_run"
    shutil.copytree(trained_run, other)
    data = bytearray((other / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (other / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(HashMismatchError) as info:
        ExplanationService(exported / "model.onnx", other)
    message = str(info.value)
    expected = __import__("json").loads((trained_run / "model.json").read_text())["weights_sha256"]
    assert expected in message and "refusing" in message
    result = run_cli("serve", "--model", str(exported / "model.onnx"), "--run", str(other), timeout=120)
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr


def test_health_then_lazy_load_then_explain(server, synth_small):
    url, service = server
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["weights_sha256"] == service.weights_sha256
    response = httpx.post(f"{url}/explain", files={"image": ("a.png", _image(synth_small), "image/png")},
                          data={"method": "crp", "concepts": "3", "target": "melanoma"}, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["target_label"] == "melanoma" and body["method"] == "crp" and len(body["concepts"]) == 3
    assert base64.b64decode(body["overlay_png_base64"])[:4] == b"\x89PNG"
    assert set(body["heatmap_stats"]) >= {"sum", "min", "max"}
    refs = body["concepts"][0]["reference_patches_png_base64"]  # from the run's concept atlas
    assert refs and base64.b64decode(refs)[:4] == b"\x89PNG"
    after = httpx.get(f"{url}/health").json()
    assert after["weights_loaded"] is True and after["cold_start_seconds"] > 0 and after["device"] == "cpu"
    assert after["concept_atlas"] == "conv_head"


@pytest.mark.parametrize("case,status,needle", [
    ("not an image", 400, "not a recognised image"),
    ("unknown method", 400, "unknown method"),
    ("target out of range", 400, "out of range"),
    ("attention on effnet", 400, "attention_resnet50"),
    ("oversized", 413, "exceeds the limit"),
])
def test_bad_requests_get_4xx_with_a_message(server, synth_small, case, status, needle):
    url, _ = server
    image, data = _image(synth_small), {"method": "lrp"}
    if case == "not an image":
        image = b"hello, I am text"
    elif case == "unknown method":
        data["method"] = "shap"
    elif case == "target out of range":
        data["target"] = "7"
    elif case == "attention on effnet":
        data["method"] = "attention"
    elif case == "oversized":
        image = b"\0" * 2_100_000
    response = httpx.post(f"{url}/explain", files={"image": ("x.png", image, "image/png")}, data=data, timeout=60)
    assert response.status_code == status and needle in response.json()["detail"]
    assert httpx.get(f"{url}/health").json()["status"] == "ok"  # still alive


def test_16_concurrent_requests_are_answered_and_batched(server, synth_small):
    url, service = server
    images = [p.read_bytes() for p in sorted(synth_small.rglob("img_*.png"))[:16]]

    def call(data):
        return httpx.post(f"{url}/explain", files={"image": ("x.png", data, "image/png")},
                          data={"method": "lrp"}, timeout=300)

    before = service.batches_run
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(call, images))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    assert len({r.json()["overlay_png_base64"] for r in responses}) > 1
    assert service.batches_run - before < 16  # some requests shared a batch
    assert max(r.json()["batch_size"] for r in responses) > 1
