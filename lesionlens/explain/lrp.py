"""LRP with zennit: the default composite (EpsilonPlusFlat: flat for the first layer, z+ for
convolutions, epsilon for dense layers, norm for sums and average pools, pass for activations)
with our canonizers and our constant-attention pooling.

Relevance starts from the target logit's value, so the input heatmap sums to that logit when
relevance is conserved (checked in the tests with biases zeroed).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from zennit.composites import LAYER_MAP_BASE, SpecialFirstLayerMapComposite
from zennit.rules import Epsilon, Flat, ZPlus
from zennit.types import Convolution, Linear

from .canonizers import ConstantAttentionPool, canonizers_for


class LesionComposite(SpecialFirstLayerMapComposite):
    """EpsilonPlusFlat plus the epsilon rule for the constant-attention pooling."""

    def __init__(self, canonizers=None):
        layer_map = [(ConstantAttentionPool, Epsilon())] + LAYER_MAP_BASE + [
            (Convolution, ZPlus()),
            (torch.nn.Linear, Epsilon()),
        ]
        super().__init__(layer_map, [(Linear, Flat())], canonizers=canonizers)


def default_composite(model: nn.Module) -> LesionComposite:
    return LesionComposite(canonizers=canonizers_for(model))


def lrp_relevance(model: nn.Module, images: torch.Tensor, targets: Optional[torch.Tensor] = None,
                  composite=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (B, K), input relevance (B, 3, H, W)) for `targets` (default: the predicted
    class). The model must be in eval mode; it is restored when this returns."""
    from zennit.attribution import Gradient

    composite = composite or default_composite(model)
    with Gradient(model=model, composite=composite) as attributor:
        if targets is None:
            with torch.no_grad():
                targets = model(images).argmax(1)
        targets = targets.to(images.device)

        def start(logits):
            # relevance = the target logit's value, zero elsewhere
            return logits * nn.functional.one_hot(targets, logits.shape[1]).to(logits.dtype)

        logits, relevance = attributor(images, start)
    return logits.detach(), relevance.detach()
