"""`create_model`: one factory over the architecture specs (architectures.py), plus the modules
of our own architecture (gated attention pooling over a timm ResNet50) and safetensors-only
loading of local pretrained weights."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from ..errors import UsageError
from .architectures import ArchitectureSpec, get_spec


class GatedAttentionPool(nn.Module):
    """a_i = softmax_i( w^T (tanh(V h_i) * sigmoid(U h_i)) ),  z = sum_i a_i h_i.

    Input (B, C, H, W) -> pooled (B, C). The last attention map, (B, H, W), is kept in
    `last_attention` so explainers and the demo can show where the head looked.
    """

    def __init__(self, channels: int, hidden: int = 128):
        super().__init__()
        self.attention_v = nn.Linear(channels, hidden)
        self.attention_u = nn.Linear(channels, hidden)
        self.attention_w = nn.Linear(hidden, 1)
        self.last_attention: Optional[torch.Tensor] = None

    def attention(self, tokens: torch.Tensor) -> torch.Tensor:
        gate = torch.tanh(self.attention_v(tokens)) * torch.sigmoid(self.attention_u(tokens))
        return torch.softmax(self.attention_w(gate).squeeze(-1), dim=1)  # (B, N)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, c, h, w = features.shape
        tokens = features.flatten(2).transpose(1, 2)  # (B, N, C)
        weights = self.attention(tokens)
        self.last_attention = weights.detach().reshape(b, h, w)
        return torch.bmm(weights.unsqueeze(1), tokens).squeeze(1)


class AttentionResNet(nn.Module):
    """Backbone features -> GatedAttentionPool -> linear classifier."""

    def __init__(self, backbone: nn.Module, num_classes: int, hidden: int = 128):
        super().__init__()
        self.backbone = backbone
        self.pool = GatedAttentionPool(backbone.num_features, hidden)
        self.classifier = nn.Linear(backbone.num_features, num_classes)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.backbone.forward_features(x)))

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.forward(x)
        return logits, self.pool.last_attention


def _init_classifier(layer: nn.Linear) -> None:
    """Small classifier weights for every architecture. timm's EfficientNet init scales the
    classifier by 1/sqrt(num_classes): with 2 classes its first logits have a std of ~5 and
    training from scratch diverges; a fresh head on a pretrained backbone wants this too."""
    nn.init.normal_(layer.weight, std=0.01)
    nn.init.zeros_(layer.bias)


def spec_of_model(model: nn.Module) -> ArchitectureSpec:
    """The spec a model was built from (create_model records its name on the model, as timm
    records `pretrained_cfg`)."""
    name = getattr(model, "lesionlens_arch", None)
    if name is None:
        raise UsageError(f"{type(model).__name__} was not built by lesionlens.training.create_model; "
                         "its architecture spec is unknown")
    return get_spec(name)


def classifier_of(model: nn.Module) -> nn.Linear:
    return model.get_submodule(spec_of_model(model).classifier)


def create_model(arch: str, num_classes: int, pretrained: Union[None, str, Path] = None) -> nn.Module:
    """Build `arch` with `num_classes` outputs.

    pretrained: None (random init, the offline default), "imagenet" (timm's weights; needs the
    network or a filled HF cache), or a path to a local .safetensors checkpoint (a timm or
    lesionlens state dict; classifier weights of another shape are skipped). Pickled checkpoints
    are refused: loading one runs arbitrary code.
    """
    spec = get_spec(arch)
    if num_classes < 2:
        raise UsageError(f"num_classes must be >= 2, got {num_classes}")
    model = spec.build(num_classes, pretrained == "imagenet")
    model.lesionlens_arch = spec.name
    _init_classifier(classifier_of(model))
    if pretrained not in (None, "imagenet"):
        load_pretrained_weights(model, Path(pretrained))
    return model


def load_pretrained_weights(model: nn.Module, path: Path) -> dict:
    """Load a local safetensors state dict, skipping tensors whose shape does not match (the
    classifier of a model trained on other classes). Returns what was skipped and missing."""
    from .checkpoint import read_safetensors

    if path.suffix != ".safetensors":
        raise UsageError(
            f"{path}: only .safetensors checkpoints are accepted (pickled .pth/.bin files can run "
            "code when loaded); convert with safetensors.torch.save_file(state_dict, ...)"
        )
    if not path.is_file():
        raise UsageError(f"{path}: pretrained checkpoint not found")
    state = read_safetensors(path, UsageError)
    own = model.state_dict()
    # A timm backbone checkpoint loads into the attention model's `backbone.` too.
    if any(k.startswith("backbone.") for k in own) and not any(k.startswith("backbone.") for k in state):
        state = {f"backbone.{k}": v for k, v in state.items()}
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(usable))
    missing = sorted(set(own) - set(usable))
    if not usable:
        raise UsageError(f"{path}: no tensor in the checkpoint fits this architecture")
    model.load_state_dict(usable, strict=False)
    return {"loaded": len(usable), "skipped": skipped, "missing": missing}
