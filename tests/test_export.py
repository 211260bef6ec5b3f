import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import write_random_run
from lesionlens.data import PreprocessSpec, normalize
from lesionlens.export import ExportError, ExportOptions, export_run
from lesionlens.runtime.metadata import ModelMetadata
from lesionlens.training import ARCHITECTURES, load_run


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_exports_with_parity_at_batch_1_and_7(arch, tmp_path):
    run = write_random_run(tmp_path / "run", arch, size=32)
    report = export_run(run, tmp_path / "out")
    assert report["passed"] and report["variants"]["model.onnx"]["max_abs_probs_diff"] <= 1e-4
    model, meta = load_run(run)
    session = _session(tmp_path / "out" / "model.onnx")
    assert [o.name for o in session.get_outputs()] == ["logits", "probs"]
    for batch in (1, 7):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
        logits, probs = session.run(None, {"image": x})
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        assert probs.shape == (batch, 2)
        assert np.abs(logits - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
        assert np.allclose(probs.sum(1), 1, atol=1e-5)


def test_metadata_is_readable_with_plain_onnx_and_onnxruntime(exported, trained_run):
    meta = json.loads((trained_run / "model.json").read_text())
    props = {p.key: p.value for p in onnx.load(str(exported / "model.onnx")).metadata_props}
    assert json.loads(props["classes"]) == ["benign", "melanoma"]
    assert props["weights_sha256"] == meta["weights_sha256"] and props["arch"] == "efficientnet_b0_relu"
    assert PreprocessSpec.from_json(props["preprocessing"]).size == 32
    assert json.loads(props["flag_policy"])["threshold"] == pytest.approx(meta["decision_threshold"])
    assert props["opset"] == "17" and "torch" in json.loads(props["versions"])
    parsed = ModelMetadata.from_props(_session(exported / "model.onnx").get_modelmeta().custom_metadata_map)
    assert parsed.flag_policy.positive_class == "melanoma" and parsed.input_format == "float32_nchw"
    uint8 = ModelMetadata.from_props(_session(exported / "model.uint8.onnx").get_modelmeta().custom_metadata_map)
    assert uint8.input_format == "uint8_nhwc"


def test_variants_are_validated_and_uint8_matches_float(exported, trained_run):
    report = json.loads((exported / "validation.json").read_text())
    assert report["passed"]
    variants = report["variants"]
    assert set(variants) == {"model.onnx", "model.fp16.onnx", "model.uint8.onnx", "model.uint8.fp16.onnx", "model.int8.onnx"}
    assert any("real images" in p for p in report["probes"])  # validated on the run's own images
    assert any("accuracy_change" in c for c in variants["model.int8.onnx"]["checks"].values())
    # independent of validation.json: uint8 graph vs float graph on the same pixels
    spec = PreprocessSpec(size=32)
    pixels = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    float_probs = _session(exported / "model.onnx").run(["probs"], {"image": np.stack([normalize(p, spec) for p in pixels])})[0]
    uint8_probs = _session(exported / "model.uint8.onnx").run(["probs"], {"image": pixels})[0]
    assert np.abs(float_probs - uint8_probs).max() <= 1e-4
    # and fp16 against fp32, measured here rather than read back from validation.json
    fp16_probs = _session(exported / "model.fp16.onnx").run(["probs"], {"image": np.stack([normalize(p, spec) for p in pixels])})[0]
    assert np.abs(float_probs - fp16_probs).max() <= 1e-2
    assert (float_probs.argmax(1) == fp16_probs.argmax(1)).all()
    assert onnx.load(str(exported / "model.fp16.onnx")).graph.initializer[0].data_type == onnx.TensorProto.FLOAT16


def test_triton_repository_parses_and_matches_the_graph(exported):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse((exported / "triton" / "lesionlens" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size > 0
    assert config.dynamic_batching.max_queue_delay_microseconds > 0 and len(config.instance_group) == 1
    session = _session(exported / "triton" / "lesionlens" / "1" / "model.onnx")
    types = {"tensor(uint8)": model_config_pb2.TYPE_UINT8, "tensor(float)": model_config_pb2.TYPE_FP32}
    for declared, actual in zip(list(config.input) + list(config.output), session.get_inputs() + session.get_outputs()):
        assert declared.name == actual.name
        assert declared.data_type == types[actual.type]
        assert list(declared.dims) == list(actual.shape[1:])
    assert config.input[0].data_type == model_config_pb2.TYPE_UINT8  # the uint8 fp16 variant is served


def test_out_of_bounds_export_fails_and_is_renamed(tmp_path, monkeypatch):
    from lesionlens.export import validate

    run = write_random_run(tmp_path / "run", "efficientnet_b0_relu", size=32)
    monkeypatch.setitem(validate.BOUNDS, "fp32", (-1.0, 1.0))  # an impossible bound
    with pytest.raises(ExportError, match="failed validation"):
        export_run(run, tmp_path / "out", ExportOptions())
    assert not (tmp_path / "out" / "model.onnx").exists()
    assert (tmp_path / "out" / "model.rejected.onnx").exists()
    assert json.loads((tmp_path / "out" / "validation.rejected.json").read_text())["passed"] is False
