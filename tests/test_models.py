import pickle

import pytest
import torch
from safetensors.torch import save_file

from lesionlens.training import ARCHITECTURES, create_model


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("num_classes", [2, 3])
def test_forward_shape(arch, num_classes):
    model = create_model(arch, num_classes).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()


def test_efficientnet_uses_relu_only():
    model = create_model("efficientnet_b0_relu", 2)
    kinds = {type(m).__name__ for m in model.modules()}
    assert "ReLU" in kinds and "SiLU" not in kinds and "Swish" not in kinds


def test_attention_head_exposes_a_normalised_map():
    model = create_model("attention_resnet50", 2).eval()
    with torch.no_grad():
        logits, attention = model.forward_with_attention(torch.randn(2, 3, 96, 96))
    assert logits.shape == (2, 2) and attention.shape == (2, 3, 3)
    assert torch.allclose(attention.sum((1, 2)), torch.ones(2), atol=1e-5)


def test_pretrained_path_loads_safetensors_and_refuses_pickles(tmp_path):
    source = create_model("resnet50", 5)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "w.safetensors"))
    from lesionlens.training.models import load_pretrained_weights

    target = create_model("resnet50", 2, pretrained=tmp_path / "w.safetensors")
    assert torch.equal(target.conv1.weight, source.conv1.weight)
    fresh = create_model("resnet50", 2)
    report = load_pretrained_weights(fresh, tmp_path / "w.safetensors")
    # the 5-class classifier is skipped (reported), not forced into the 2-class head
    assert set(report["skipped"]) == {"fc.weight", "fc.bias"} and set(report["missing"]) == {"fc.weight", "fc.bias"}
    assert not torch.equal(target.fc.weight, source.fc.weight[:2])
    attention = create_model("attention_resnet50", 2, pretrained=tmp_path / "w.safetensors")
    assert torch.equal(attention.backbone.conv1.weight, source.conv1.weight)
    (tmp_path / "w.pth").write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(ValueError, match="only .safetensors"):  # UsageError is a ValueError
        create_model("resnet50", 2, pretrained=tmp_path / "w.pth")


def test_unknown_arch_and_bad_class_count():
    with pytest.raises(ValueError, match="unknown architecture"):
        create_model("vgg16", 2)
    with pytest.raises(ValueError, match="num_classes"):
        create_model("resnet50", 1)
