"""The four explanation methods behind one signature (captum's shape):
method(model, images (B, 3, H, W), targets (B,), **options) -> heatmaps (B, H, W) + extras.

targets: a class index per image, PREDICTED (-1) for "the predicted class", or None for all
predicted. Each method resolves them from its own forward pass and returns the logits, so the
caller needs no forward of its own (targets.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from .lrp import default_composite, lrp_relevance
from .targets import resolve_targets


@dataclass
class Concept:
    """One CRP concept: a channel of a layer, its share of that layer's relevance, and the
    input heatmap conditioned on it."""

    layer: str
    channel: int
    relevance_share: float
    heatmap: Optional[torch.Tensor] = None  # (H, W)


@dataclass
class MethodResult:
    heatmaps: torch.Tensor  # (B, H, W), signed
    logits: torch.Tensor  # (B, K): the model's output on these images
    targets: torch.Tensor  # (B,): the class each heatmap explains
    concepts: list[list[Concept]] = field(default_factory=list)  # per image, CRP only
    info: dict = field(default_factory=dict)


def run_lrp(model, images, targets, composite=None, registered: bool = False, engine: str = "fast",
            **_) -> MethodResult:
    """engine "fast": our hook-free implementation of the composite's rules (fast_lrp.py);
    "zennit": zennit's hooks, the reference (tested to give the same heatmaps). registered:
    the model is already prepared for that engine (the sidecar's long-lived copies)."""
    if engine == "fast" and composite is None:
        from .fast_lrp import fast_lrp_relevance

        logits, relevance = fast_lrp_relevance(model, images, targets, prepared=registered)
    elif engine in ("fast", "zennit"):
        logits, relevance = lrp_relevance(model, images, targets, composite, registered)
    else:
        raise ValueError(f"unknown LRP engine {engine!r}: use fast or zennit")
    return MethodResult(relevance.sum(1), logits, resolve_targets(logits, targets),
                        info={"engine": engine if composite is None else "zennit"})


def gradcam_layer(model: nn.Module) -> nn.Module:
    """The last convolutional stage of each architecture."""
    if hasattr(model, "backbone"):
        return model.backbone.layer4
    if hasattr(model, "layer4"):
        return model.layer4
    if hasattr(model, "conv_head"):
        return model.bn2  # conv_head + BatchNormAct (ReLU): the last feature map
    raise ValueError(f"no Grad-CAM layer known for {type(model).__name__}")


def run_gradcam(model, images, targets, **_) -> MethodResult:
    """captum's LayerGradCam, upsampled to the input. Plain autograd, so never inside a zennit
    composite (its hooks change gradients)."""
    from captum.attr import LayerAttribution, LayerGradCam

    with torch.no_grad():  # captum needs the targets before its own forward
        logits = model(images)
    targets = resolve_targets(logits, targets)
    cam = LayerGradCam(model, gradcam_layer(model))
    with torch.enable_grad():
        maps = cam.attribute(images.detach().requires_grad_(), target=targets, relu_attributions=True)
    upsampled = LayerAttribution.interpolate(maps.detach(), images.shape[-2:], interpolate_mode="bilinear")
    return MethodResult(upsampled[:, 0], logits, targets)


def run_attention(model, images, targets, **_) -> MethodResult:
    """The gated-attention head's weights over the last feature map, upsampled to the input.
    Independent of the target: the head attends once for all classes."""
    if not hasattr(model, "forward_with_attention"):
        raise ValueError("method 'attention' needs the attention_resnet50 architecture")
    with torch.no_grad():
        logits, attention = model.forward_with_attention(images)
    upsampled = nn.functional.interpolate(attention[:, None], images.shape[-2:], mode="bilinear", align_corners=False)
    return MethodResult(upsampled[:, 0], logits, resolve_targets(logits, targets),
                        info={"attention_grid": list(attention.shape[-2:])})


def concept_layer(model: nn.Module) -> str:
    """The default CRP layer: the last block's output (a residual Sum after canonization would
    be ideal, but CRP records module outputs, so we take the block's final conv)."""
    if hasattr(model, "backbone"):
        return "backbone.layer4.2.conv3"
    if hasattr(model, "layer4"):
        return "layer4.2.conv3"
    return "conv_head"


def run_crp(model, images, targets, composite=None, concepts: int = 8, layer: Optional[str] = None,
            registered: bool = False, engine: str = "fast", **_) -> MethodResult:
    """CRP with exclude_parallel semantics (relevance through a shortcut is not credited to a
    concept: the fix for "every channel gives the same heatmap") and our canonizers. Returns
    the full LRP heatmap plus, per image, the top-`concepts` channels of `layer` with their
    share of that layer's relevance and a conditional heatmap each.

    engine "fast": all concepts of an image in one batched pass on the fast LRP engine
    (fast_crp.py); "zennit": zennit-crp's CondAttribution, the reference (tested to agree).
    registered: the model is already prepared for that engine (the sidecar's copies)."""
    layer = layer or concept_layer(model)
    if engine == "fast" and composite is None:
        from .fast_crp import concept_relevance

        result = concept_relevance(model, images, targets, layer, concepts, prepared=registered)
        per_image = [[Concept(layer, int(c), float(result.shares[i, c]), result.conditional[i, j])
                      for j, c in enumerate(result.channels[i].tolist())] for i in range(len(images))]
        return MethodResult(result.heatmaps, result.logits, resolve_targets(result.logits, targets), per_image,
                            info={"layer": layer, "engine": "fast"})
    if engine not in ("fast", "zennit"):
        raise ValueError(f"unknown CRP engine {engine!r}: use fast or zennit")
    return _run_zennit_crp(model, images, targets, composite, concepts, layer, registered)


def _run_zennit_crp(model, images, targets, composite, concepts: int, layer: str, registered: bool) -> MethodResult:
    from . import crp_compat  # noqa: F401  (np.int for numpy 2)
    from crp.attribution import CondAttribution
    from crp.concepts import ChannelConcept

    # registered: the caller keeps the composite on this model already; crp must not add it twice
    composite = None if registered else (composite or default_composite(model))
    attribution = CondAttribution(model, no_param_grad=True)
    channel = ChannelConcept()
    with torch.no_grad():  # crp's conditions name the class up front
        logits = model(images)
    targets = resolve_targets(logits, targets)
    heatmaps, per_image = [], []
    for image, target in zip(images, targets.tolist()):
        x = image[None].clone().requires_grad_()
        # crp starts relevance from the target logit's value by default, as our LRP does
        full = attribution(x, [{"y": [target]}], composite, record_layer=[layer])
        shares = channel.attribute(full.relevances[layer], abs_norm=True)[0]  # signed shares, sum |.| = 1
        top = torch.argsort(shares.abs(), descending=True)[:concepts].tolist()
        conditions = [{layer: [c], "y": [target]} for c in top]
        conditional = attribution(image[None].repeat(len(top), 1, 1, 1).requires_grad_(), conditions, composite,
                                  exclude_parallel=True)
        heatmaps.append(full.heatmap[0])
        per_image.append([Concept(layer, c, float(shares[c]), conditional.heatmap[i].detach())
                          for i, c in enumerate(top)])
    return MethodResult(torch.stack(heatmaps).detach(), logits, targets, per_image,
                        info={"layer": layer, "engine": "zennit"})


METHODS = {"lrp": run_lrp, "crp": run_crp, "gradcam": run_gradcam, "attention": run_attention}
