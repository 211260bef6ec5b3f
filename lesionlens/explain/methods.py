"""The explanation methods behind one signature (captum's shape):
method(prepared model, images (B, 3, H, W), targets (B,) or None, explicit options) -> MethodResult.

The model comes prepared by `Explainer` (explainer.py): for lrp and crp it is canonized with
the LRP rules in place (the fast engine's patches, or zennit's composite registered); gradcam
and attention get the plain model. Which layers to use comes from the architecture spec.

targets: a class index per image, PREDICTED (-1) for "the predicted class", or None for all
predicted. Each method resolves them from its own forward pass and returns the logits, so the
caller needs no forward of its own (targets.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from .lrp import prepared_relevance
from .targets import resolve_targets


@dataclass
class Concept:
    """One CRP concept: a channel of a layer, its share of that layer's relevance, and the
    input heatmap conditioned on it."""

    layer: str
    channel: int
    relevance_share: float  # of the layer's relevance (crp's abs_norm: the |shares| of all channels sum to 1)
    heatmap: Optional[torch.Tensor] = None  # (H, W)
    share_of_logit: Optional[float] = None  # the channel's relevance / the explained logit
    layer_share_of_logit: Optional[float] = None  # the whole layer's relevance / the explained logit

    @property
    def decision_share(self) -> Optional[float]:
        """The concept's share of the decision, or None where that number would mean nothing:
        when the layer does not carry the logit's relevance (outside 50-150% of it, e.g. a
        layer bypassed by a shortcut, or rules that lose relevance to biases)."""
        layer = self.layer_share_of_logit
        if layer is None or self.share_of_logit is None or not 0.5 <= layer <= 1.5:
            return None
        return self.share_of_logit

    @property
    def evidence_share(self) -> Optional[float]:
        """decision_share with the sign of the concept's own relevance: + when the concept is
        evidence for the class (red in its heatmap), - against (blue), its size a share of the
        logit's magnitude. decision_share divides by the logit itself, so when the explained
        logit is negative (a class the model did not pick) a concept drawn in red read "-5% of
        the decision" beside "+1% of the layer's relevance"."""
        share = self.decision_share
        if share is None:
            return None
        return abs(share) if self.relevance_share >= 0 else -abs(share)


@dataclass
class MethodResult:
    heatmaps: torch.Tensor  # (B, H, W), signed
    logits: torch.Tensor  # (B, K): the model's output on these images
    targets: torch.Tensor  # (B,): the class each heatmap explains
    concepts: list[list[Concept]] = field(default_factory=list)  # per image, CRP only
    info: dict = field(default_factory=dict)


def run_lrp(model: nn.Module, images: torch.Tensor, targets, *, engine: str) -> MethodResult:
    """LRP on a model prepared for `engine` (fast: our hook-free rules; zennit: the composite's
    hooks, the reference; the tests require the same heatmaps)."""
    logits, relevance = prepared_relevance(model, images, targets)
    return MethodResult(relevance.sum(1), logits, resolve_targets(logits, targets), info={"engine": engine})


def run_gradcam(model: nn.Module, images: torch.Tensor, targets, *, layer: str) -> MethodResult:
    """captum's LayerGradCam at the spec's Grad-CAM layer, upsampled to the input. Plain
    autograd, so never on a model prepared for LRP (its rules change gradients)."""
    from captum.attr import LayerAttribution, LayerGradCam

    with torch.no_grad():  # captum needs the targets before its own forward
        logits = model(images)
    targets = resolve_targets(logits, targets)
    cam = LayerGradCam(model, model.get_submodule(layer))
    with torch.enable_grad():
        maps = cam.attribute(images.detach().requires_grad_(), target=targets, relu_attributions=True)
    upsampled = LayerAttribution.interpolate(maps.detach(), images.shape[-2:], interpolate_mode="bilinear")
    return MethodResult(upsampled[:, 0], logits, targets, info={"layer": layer})


def run_attention(model: nn.Module, images: torch.Tensor, targets, *, module: str) -> MethodResult:
    """The attention-pooling weights over the last feature map, upsampled to the input. The
    same for every class: the head attends once, then the classifier weighs what it pooled."""
    pool = model.get_submodule(module)
    with torch.no_grad():
        logits = model(images)
    attention = pool.last_attention
    upsampled = nn.functional.interpolate(attention[:, None], images.shape[-2:], mode="bilinear", align_corners=False)
    return MethodResult(upsampled[:, 0], logits, resolve_targets(logits, targets),
                        info={"attention_grid": list(attention.shape[-2:]), "class_independent": True})


def run_crp(model: nn.Module, images: torch.Tensor, targets, *, engine: str, concepts: int,
            layer: str, choice: str = "top") -> MethodResult:
    """CRP with exclude_parallel semantics (relevance through a shortcut is not credited to a
    concept: the fix for "every channel gives the same heatmap") and our canonizers. Returns
    the full LRP heatmap plus, per image, `concepts` channels of `layer` (chosen by `choice`:
    concept_choice.py) with their share of that layer's relevance and a conditional heatmap each.

    engine "fast": all concepts of an image in one batched pass on the fast LRP engine
    (fast_crp.py); "zennit": zennit-crp's CondAttribution, the reference (tested to agree)."""
    if engine == "fast":
        from .fast_crp import concept_relevance

        result = concept_relevance(model, images, targets, layer, concepts, choice)
        logit = result.explained_logit
        per_image = [[Concept(layer, int(c), float(result.shares[i, c]), result.conditional[i, j],
                              *_logit_shares(result.channel_relevance[i], c, logit[i]))
                      for j, c in enumerate(result.channels[i].tolist())] for i in range(len(images))]
        return MethodResult(result.heatmaps, result.logits, resolve_targets(result.logits, targets), per_image,
                            info={"layer": layer, "engine": "fast", "concept_choice": choice})
    return _run_zennit_crp(model, images, targets, concepts, layer, choice)


def _logit_shares(per_channel: torch.Tensor, channel: int, logit) -> tuple[Optional[float], Optional[float]]:
    logit = float(logit)
    if logit == 0:
        return None, None
    return float(per_channel[channel]) / logit, float(per_channel.sum()) / logit


def _run_zennit_crp(model, images, targets, concepts: int, layer: str, choice: str) -> MethodResult:
    from . import crp_compat  # noqa: F401  (np.int for numpy 2)
    from crp.attribution import CondAttribution
    from crp.concepts import ChannelConcept

    from .concept_choice import choose_channels

    # the composite is registered on this model already (Explainer): crp must not add it twice
    attribution = CondAttribution(model, no_param_grad=True)
    channel = ChannelConcept()
    with torch.no_grad():  # crp's conditions name the class up front
        logits = model(images)
    targets = resolve_targets(logits, targets)
    heatmaps, per_image = [], []
    for image, target in zip(images, targets.tolist()):
        x = image[None].clone().requires_grad_()
        # crp starts relevance from the target logit's value by default, as our LRP does
        full = attribution(x, [{"y": [target]}], None, record_layer=[layer])
        shares = channel.attribute(full.relevances[layer], abs_norm=True)[0]  # signed shares, sum |.| = 1
        top = choose_channels(shares, full.relevances[layer][0], concepts, choice).tolist()
        conditions = [{layer: [c], "y": [target]} for c in top]
        conditional = attribution(image[None].repeat(len(top), 1, 1, 1).requires_grad_(), conditions, None,
                                  exclude_parallel=True)
        heatmaps.append(full.heatmap[0])
        per_channel = full.relevances[layer][0].flatten(1).sum(1)
        logit = logits[len(heatmaps) - 1, target]
        per_image.append([Concept(layer, c, float(shares[c]), conditional.heatmap[i].detach(),
                                  *_logit_shares(per_channel, c, logit))
                          for i, c in enumerate(top)])
    return MethodResult(torch.stack(heatmaps).detach(), logits, targets, per_image,
                        info={"layer": layer, "engine": "zennit", "concept_choice": choice})


def run_attention_crp(model, images, targets, **options) -> MethodResult:
    from .attention_crp import run_attention_crp as run

    return run(model, images, targets, **options)


METHODS = {"lrp": run_lrp, "crp": run_crp, "gradcam": run_gradcam, "attention": run_attention,
           "attention_crp": run_attention_crp}
LRP_METHODS = ("lrp", "crp", "attention_crp")  # the methods that run on a model prepared with LRP rules
