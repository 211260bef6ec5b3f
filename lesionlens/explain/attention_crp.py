"""Attention and CRP together: which concepts the model uses where it looks.

The original team's open idea, as a local concept analysis (Achtibat et al. 2023, the CRP
paper's "where" and "what"): the attention head says where the model pools; CRP says what each
channel of a concept layer contributes. Here:

1. one LRP pass (the explainer's rules) gives the concept layer's relevance, and the attention
   weights over the last feature grid come from the head itself (its MLP on the features);
2. the attention's top region: the fewest grid cells that hold `REGION_MASS` of the attention;
3. each channel's relevance inside that region (the region mapped onto the concept layer's grid)
   chooses the concepts (concept_choice.py); a concept's share is its part of the region's
   |relevance|, signed by its own relevance;
4. the region's relevance, and each top concept's part of it, pushed from the concept layer to
   the input (crp's exclude_parallel semantics: nothing flows around the layer): the main
   heatmap shows what, inside the attended region, made the decision; one heatmap per concept.

When relevance is conserved below the layer (tested with biases zeroed), the heatmaps of all
channels add up to the region's relevance at the layer.
"""

from __future__ import annotations

import torch
from torch import nn

from .concept_choice import choose_batch
from .methods import Concept, MethodResult
from .targets import resolve_targets, start_relevance

REGION_MASS = 0.5


def top_region(attention: torch.Tensor, mass: float = REGION_MASS) -> torch.Tensor:
    """(h, w) attention weights summing to 1 -> bool mask of the fewest cells holding `mass`."""
    flat = attention.flatten()
    order = torch.argsort(flat, descending=True)
    cumulative = torch.cumsum(flat[order], 0)
    count = int((cumulative < mass).sum()) + 1
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[order[:count]] = True
    return mask.reshape(attention.shape)


def run_attention_crp(model: nn.Module, images: torch.Tensor, targets, *, engine: str, concepts: int,
                      layer: str, module: str, choice: str = "top") -> MethodResult:
    """The whole batch at once: in eval mode no image affects another, so one forward pass, one
    backward pass to the concept layer, one for the region maps and one per concept rank (the
    k-th concept of every image together) replace a loop of single-image passes."""
    pool = model.get_submodule(module)
    head = getattr(pool, "pool", pool)  # canonized: ConstantAttentionPool keeps the original head
    concept_layer = model.get_submodule(layer)
    captured = {}
    handles = [concept_layer.register_forward_hook(lambda _m, _i, out: captured.__setitem__("layer", out)),
               pool.register_forward_hook(lambda _m, inputs, _o: captured.__setitem__("features", inputs[0]))]
    x = images.detach().clone().requires_grad_()
    try:
        with torch.enable_grad():
            logits = model(x)
            target = resolve_targets(logits, targets)
            start = start_relevance(logits, target)
            layer_out = captured["layer"]
            layer_relevance, = torch.autograd.grad(logits, layer_out, start, retain_graph=True)
            features = captured["features"].detach()
            b, c, h, w = features.shape
            attention = head.attention(features.flatten(2).transpose(1, 2)).detach().reshape(b, h, w)
            region = torch.stack([top_region(a) for a in attention])  # (B, h, w)
            at_layer = nn.functional.interpolate(region[:, None].float(), layer_relevance.shape[-2:], mode="nearest")
            local = layer_relevance * at_layer
            per_channel = local.flatten(2).sum(2)  # (B, C)
            region_total = per_channel.sum(1)
            top = choose_batch(per_channel, local, concepts, choice)  # (B, k), concept_choice.py
            region_map, = torch.autograd.grad(layer_out, x, local, retain_graph=True)
            rows = torch.arange(b)
            conditional = []  # conditional[k]: (B, H, W), the k-th concept of each image
            for k in range(top.shape[1]):
                mask = torch.zeros_like(local)
                mask[rows, top[:, k]] = local[rows, top[:, k]]
                heat, = torch.autograd.grad(layer_out, x, mask, retain_graph=True)
                conditional.append(heat.sum(1).detach())
    finally:
        for handle in handles:
            handle.remove()
    per_image, region_shares, region_totals = [], [], []
    logit_values = start.sum(1)
    for i in range(b):
        total, logit = float(region_total[i]), float(logit_values[i])
        # over |total|: a share's sign is the concept's own (for the class or against it, as
        # Concept.evidence_share reads it) also where the region's total is negative
        per_image.append([Concept(layer, channel, float(per_channel[i, channel]) / abs(total) if total else 0.0,
                                  conditional[k][i], float(per_channel[i, channel]) / logit if logit else None,
                                  total / logit if logit else None)
                          for k, channel in enumerate(top[i].tolist())])
        region_shares.append(total / logit if logit else None)
        region_totals.append(total)
    regions = nn.functional.interpolate(region[:, None].float(), images.shape[-2:], mode="nearest")[:, 0] > 0
    return MethodResult(region_map.sum(1).detach(), logits.detach(), target, per_image,
                        info={"layer": layer, "engine": engine, "concept_choice": choice, "region_mass": REGION_MASS,
                              "regions": regions, "region_share_of_logit": region_shares,
                              "region_relevance": region_totals})
