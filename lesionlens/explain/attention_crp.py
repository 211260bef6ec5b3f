"""Attention and CRP together: which concepts the model uses where it looks.

The original team's open idea, as a local concept analysis (Achtibat et al. 2023, the CRP
paper's "where" and "what"): the attention head says where the model pools; CRP says what each
channel of a concept layer contributes. Here:

1. one LRP pass (the explainer's rules) gives the concept layer's relevance, and the attention
   weights over the last feature grid come from the head itself (its MLP on the features);
2. the attention's top region: the fewest grid cells that hold `REGION_MASS` of the attention;
3. each channel's relevance inside that region (the region mapped onto the concept layer's grid)
   ranks the concepts; a concept's share is its part of the region's relevance;
4. the region's relevance, and each top concept's part of it, pushed from the concept layer to
   the input (crp's exclude_parallel semantics: nothing flows around the layer): the main
   heatmap shows what, inside the attended region, made the decision; one heatmap per concept.

When relevance is conserved below the layer (tested with biases zeroed), the heatmaps of all
channels add up to the region's relevance at the layer.
"""

from __future__ import annotations

import torch
from torch import nn

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
                      layer: str, module: str) -> MethodResult:
    pool = model.get_submodule(module)
    head = getattr(pool, "pool", pool)  # canonized: ConstantAttentionPool keeps the original head
    concept_layer = model.get_submodule(layer)
    heatmaps, per_image, regions, logits_all, targets_all, region_shares, region_totals = [], [], [], [], [], [], []
    for i in range(len(images)):
        captured = {}
        handles = [concept_layer.register_forward_hook(lambda _m, _i, out: captured.__setitem__("layer", out)),
                   pool.register_forward_hook(lambda _m, inputs, _o: captured.__setitem__("features", inputs[0]))]
        x = images[i:i + 1].detach().clone().requires_grad_()
        try:
            with torch.enable_grad():
                logits = model(x)
                target = resolve_targets(logits, None if targets is None else targets[i:i + 1])
                start = start_relevance(logits, target)
                layer_out = captured["layer"]
                layer_relevance, = torch.autograd.grad(logits, layer_out, start, retain_graph=True)
                features = captured["features"].detach()
                b, c, h, w = features.shape
                attention = head.attention(features.flatten(2).transpose(1, 2)).detach().reshape(h, w)
                region = top_region(attention)
                at_layer = nn.functional.interpolate(region[None, None].float(), layer_relevance.shape[-2:],
                                                     mode="nearest")[0, 0]
                local = layer_relevance * at_layer
                per_channel = local[0].flatten(1).sum(1)
                region_total = per_channel.sum()
                top = torch.argsort(per_channel.abs(), descending=True)[:concepts].tolist()
                region_map, = torch.autograd.grad(layer_out, x, local, retain_graph=True)
                conditional = []
                for channel in top:
                    mask = torch.zeros_like(local)
                    mask[:, channel] = local[:, channel]
                    heat, = torch.autograd.grad(layer_out, x, mask, retain_graph=True)
                    conditional.append(heat[0].sum(0).detach())
        finally:
            for handle in handles:
                handle.remove()
        total = float(region_total)
        logit = float(start.sum())
        per_image.append([Concept(layer, channel, float(per_channel[channel]) / total if total else 0.0, heat,
                                  float(per_channel[channel]) / logit if logit else None,
                                  total / logit if logit else None)
                          for channel, heat in zip(top, conditional)])
        heatmaps.append(region_map[0].sum(0).detach())
        regions.append(nn.functional.interpolate(region[None, None].float(), images.shape[-2:], mode="nearest")[0, 0] > 0)
        region_shares.append(total / logit if logit else None)
        region_totals.append(total)
        logits_all.append(logits.detach())
        targets_all.append(target)
    return MethodResult(torch.stack(heatmaps), torch.cat(logits_all), torch.cat(targets_all), per_image,
                        info={"layer": layer, "engine": engine, "region_mass": REGION_MASS,
                              "regions": torch.stack(regions), "region_share_of_logit": region_shares,
                              "region_relevance": region_totals})
