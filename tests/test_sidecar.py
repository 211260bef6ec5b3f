import base64
import json
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import run_cli
from lesionlens.errors import HashMismatchError
from lesionlens.sidecar.service import ExplanationService


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(exported, trained_run):
    import uvicorn

    from lesionlens.explain.atlas import build_atlas
    from lesionlens.sidecar.server import create_app

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
    assert health["weights_loaded"] is False  # nothing loaded before the first request
    response = httpx.post(f"{url}/explain", files={"image": ("a.png", _image(synth_small), "image/png")},
                          data={"method": "crp", "concepts": "3", "target": "melanoma"}, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["target_label"] == "melanoma" and body["method"] == "crp" and len(body["concepts"]) == 3
    assert body["weights_sha256"] == service.weights_sha256  # every answer says which weights it explained
    assert base64.b64decode(body["overlay_png_base64"])[:4] == b"\x89PNG"
    assert set(body["heatmap_stats"]) >= {"sum", "min", "max"}
    refs = body["concepts"][0]["reference_patches_png_base64"]  # from the run's concept atlas
    assert refs and base64.b64decode(refs)[:4] == b"\x89PNG"
    after = httpx.get(f"{url}/health").json()
    assert after["weights_loaded"] is True and after["cold_start_seconds"] > 0 and after["device"] == "cpu"
    assert after["concept_atlas"] == "blocks.5"
    assert body["info"]["concept_choice"] == "top"  # the architecture's (EfficientNet)
    # another concept choice per request: the answer says which, and its concepts are evidence
    response = httpx.post(f"{url}/explain", files={"image": ("a.png", _image(synth_small), "image/png")},
                          data={"method": "crp", "concepts": "3", "target": "melanoma", "concept_choice": "distinct"},
                          timeout=120)
    assert response.status_code == 200, response.text
    distinct = response.json()
    assert distinct["info"]["concept_choice"] == "distinct" and len(distinct["concepts"]) == 3
    assert distinct["concepts"][0]["relevance_share"] > 0  # the strongest evidence for the class first


@pytest.mark.parametrize("case,status,needle", [
    ("not an image", 400, "not a recognised image"),
    ("unknown method", 400, "is not available"),
    ("target out of range", 400, "out of range"),
    ("attention on effnet", 400, "not available for efficientnet_b0_relu"),
    ("other weights", 409, "not " + "0" * 64),
    ("concepts 0", 400, "concepts must be a whole number from 1 to 64"),
    ("unknown concept choice", 400, "unknown concept_choice 'best'"),
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
    elif case == "other weights":
        data["expected_sha256"] = "0" * 64
    elif case == "concepts 0":
        data.update(method="crp", concepts="0")
    elif case == "unknown concept choice":
        data.update(method="crp", concept_choice="best")
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


def test_hardening_host_header_docs_and_early_413(server):
    url, service = server
    assert httpx.get(f"{url}/health", headers={"Host": "evil.example"}).status_code == 400  # DNS rebinding
    assert httpx.get(f"{url}/docs").status_code == 404 and httpx.get(f"{url}/openapi.json").status_code == 404
    # a huge declared body is refused from its Content-Length, before anything is read
    host, port = url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"POST /explain HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                     b"Content-Length: 1073741824\r\n\r\n")
        reply = b""
        while chunk := conn.recv(4096):  # the server closes the connection after its answer
            reply += chunk
        reply = reply.decode()
    assert reply.startswith("HTTP/1.1 413") and "exceeds the limit" in reply
    # a chunked body (no Content-Length) is cut off once it passes the limit
    head = b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
    chunks = (head if i == 0 else b"\0" * 500_000 for i in range(11))
    response = httpx.post(f"{url}/explain", content=chunks, timeout=60,
                          headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert response.status_code == 413 and "exceeds the limit" in response.json()["detail"]


def test_bearer_token_and_non_loopback_binding(exported, trained_run):
    from fastapi.testclient import TestClient

    from lesionlens.errors import UsageError
    from lesionlens.sidecar.server import create_app, serve

    service = ExplanationService(exported / "model.onnx", trained_run, device="cpu")
    client = TestClient(create_app(service, token="s3cret", allowed_hosts=["testserver"]))
    assert client.get("/health").status_code == 401
    assert client.get("/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    with pytest.raises(UsageError, match="bearer token"):
        serve(str(exported / "model.onnx"), str(trained_run), host="0.0.0.0")


def test_the_whole_run_is_validated_at_start_up_and_load_failures_are_503(exported, trained_run, tmp_path):
    from fastapi.testclient import TestClient

    from lesionlens.errors import RunError
    from lesionlens.sidecar.server import create_app

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    meta = json.loads((run / "model.json").read_text())
    meta["weights_sha256"] = "f" * 64  # only model.json's hash tampered with
    (run / "model.json").write_text(json.dumps(meta))
    with pytest.raises(RunError, match="changed after training"):
        ExplanationService(exported / "model.onnx", run)
    meta["weights_sha256"] = json.loads((trained_run / "model.json").read_text())["weights_sha256"]
    (run / "model.json").write_text(json.dumps(meta))
    service = ExplanationService(exported / "model.onnx", run, device="cpu")
    (run / "model.safetensors").unlink()  # the run breaks after start-up: the lazy load fails
    client = TestClient(create_app(service, allowed_hosts=["testserver"]))
    response = client.post("/explain", files={"image": ("a.png", _png_bytes(), "image/png")}, data={"method": "lrp"})
    assert response.status_code == 503 and "could not be loaded" in response.json()["detail"]
    health = client.get("/health").json()
    assert health["status"] == "error" and "could not be loaded" in health["error"]


def _png_bytes():
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
