import numpy as np
import pytest

from conftest import assert_runs_without_heavy_imports
from lesionlens.data import PreprocessSpec, preprocess


def test_output_shape_dtype_and_normalisation():
    spec = PreprocessSpec(size=32)
    rgb = np.full((50, 70, 3), 128, np.uint8)
    out = preprocess(rgb, spec)
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    expected = (128 / 255 - np.array(spec.mean)) / np.array(spec.std)
    assert np.allclose(out[:, 5, 5], expected, atol=1e-5)


def test_center_crop_keeps_the_centre_and_letterbox_keeps_everything():
    rgb = np.zeros((40, 120, 3), np.uint8)
    rgb[:, :40] = 255  # left third white: cropped away by a centre crop, kept by letterbox
    crop = preprocess(rgb, PreprocessSpec(size=40, resize="shorter_side_center_crop", mean=(0, 0, 0), std=(1, 1, 1)))
    assert crop.max() == 0
    box = preprocess(rgb, PreprocessSpec(size=40, resize="letterbox", mean=(0, 0, 0), std=(1, 1, 1)))
    assert box.max() == 1.0 and box[:, 0, 20].max() == 0  # padding rows are pad_value


def test_spec_round_trips_through_json_and_rejects_nonsense():
    spec = PreprocessSpec(size=96, interpolation="linear")
    assert PreprocessSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError):
        PreprocessSpec(size=96, resize="zoom")
    with pytest.raises(ValueError):
        PreprocessSpec(size=96, std=(0, 1, 1))


def test_a_spec_with_a_step_this_version_does_not_know_is_refused_by_name(tmp_path):
    """A newer lesionlens's pixel step (as `unframe` was) must not be skipped silently: the model
    would see other pixels than it was trained on. model.json and the ONNX metadata name it."""
    import json

    from lesionlens.errors import MetadataError, RunError
    from lesionlens.runtime.metadata import FlagPolicy, ModelMetadata
    from lesionlens.training.rundir import RunMetadata

    newer = dict(PreprocessSpec(size=96).to_dict(), dehaze=True)
    with pytest.raises(ValueError, match="dehaze"):
        PreprocessSpec.from_dict(newer)
    with pytest.raises(RunError, match=r"runs/a/model\.json: bad preprocessing spec .*dehaze"):
        RunMetadata.from_dict({"arch": "resnet50", "classes": ["benign", "melanoma"], "preprocessing": newer,
                               "weights_sha256": "0" * 64}, source="runs/a/model.json")
    props = ModelMetadata(classes=["benign", "melanoma"], preprocessing=PreprocessSpec(size=96),
                          flag_policy=FlagPolicy("melanoma", 1, 0.5), arch="resnet50",
                          weights_sha256="0" * 64).to_props()
    props["preprocessing"] = json.dumps(newer)
    with pytest.raises(MetadataError, match="model.onnx: malformed lesionlens metadata .*dehaze"):
        ModelMetadata.from_props(props, source="model.onnx")


def test_data_decode_and_preprocess_do_not_import_torch():
    assert_runs_without_heavy_imports(
        "import lesionlens.data as d, numpy as np; "
        "d.preprocess(np.zeros((20,20,3),np.uint8), d.PreprocessSpec(size=16))"
    )
