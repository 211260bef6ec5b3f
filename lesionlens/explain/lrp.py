"""LRP with zennit: the default composite (EpsilonPlusFlat: flat for the first layer, z+ for
convolutions, epsilon for dense layers, norm for sums and average pools, pass for activations)
with our canonizers and our constant-attention pooling.

Relevance starts from the target logit's value (targets.start_relevance), so the input heatmap
sums to that logit when relevance is conserved (checked in the tests with biases zeroed).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from zennit.composites import LAYER_MAP_BASE, SpecialFirstLayerMapComposite
from zennit.core import mod_params, stabilize
from zennit.layer import Sum
from zennit.rules import Epsilon, Flat, Norm, ZPlus
from zennit.types import AvgPool, Convolution, Linear

from ..errors import ExplainError
from .canonizers import ConstantAttentionPool, canonizers_for
from .targets import resolve_targets, start_relevance


class ZPlusNonNegative(ZPlus):
    """zennit's ZPlus, minus work that contributes nothing: ZPlus evaluates the layer twice,
    on the positive inputs with positive weights and on the negative inputs with negative
    weights. Behind a ReLU every input is >= 0, so the second term is exactly zero (zero inputs,
    zero bias); we skip it then and fall back to zennit's two-term rule otherwise. Same
    relevance (tested against zennit's ZPlus), about a third less compute per convolution."""

    def backward(self, module, grad_input, grad_output):
        original = self.stored_tensors["input"][0].detach()
        if original.min() < 0:
            return super().backward(module, grad_input, grad_output)
        positive_params = self.param_modifiers[0]
        inputs = original.requires_grad_()
        with mod_params(module, positive_params, param_keys=self.param_keys, require_params=self.require_params) \
                as modified, torch.autograd.enable_grad():
            outputs = modified.forward(inputs)
        gradient, = torch.autograd.grad(outputs, inputs, grad_outputs=grad_output[0] / stabilize(outputs))
        relevance = inputs * gradient
        return tuple(relevance if g.shape == relevance.shape else None for g in grad_input)

    def copy(self):
        return ZPlusNonNegative()


class LesionComposite(SpecialFirstLayerMapComposite):
    """EpsilonPlusFlat (with ZPlusNonNegative for its z+ rule) plus the epsilon rule for the
    constant-attention pooling.

    `hook_relus=False` (the default) leaves ReLUs to plain autograd instead of zennit's Pass
    rule. Same relevance: Pass differs from the ReLU gradient only where the ReLU output is 0,
    and every rule above a ReLU in our architectures (z+, epsilon, norm for sums and pools, the
    constant-gate identity) gives an input of 0 no relevance. Saves a hook and a copy of every
    activation (tested equal to the hooked version)."""

    def __init__(self, canonizers=None, zplus=ZPlusNonNegative, hook_relus: bool = False):
        base = LAYER_MAP_BASE if hook_relus else [(Sum, Norm()), (AvgPool, Norm())]
        layer_map = [(ConstantAttentionPool, Epsilon())] + base + [
            (Convolution, zplus()),
            (torch.nn.Linear, Epsilon()),
        ]
        super().__init__(layer_map, [(Linear, Flat())], canonizers=canonizers)


# The LRP composites an architecture spec can name (ArchitectureSpec.composite).
COMPOSITES = {"epsilon_plus_flat": LesionComposite}


def default_composite(model: nn.Module) -> LesionComposite:
    """The composite the model's architecture spec names, with its canonizers."""
    from ..training.models import spec_of_model

    name = spec_of_model(model).composite
    if name not in COMPOSITES:
        raise ExplainError(f"unknown LRP composite {name!r}; known: {sorted(COMPOSITES)}")
    return COMPOSITES[name](canonizers=canonizers_for(model))


def prepared_relevance(model: nn.Module, images: torch.Tensor, targets: Optional[torch.Tensor]):
    """(logits (B, K), input relevance (B, 3, H, W)) on a model whose backward already computes
    LRP relevance (zennit's composite registered, or the fast engine's patches in place).
    `targets`: None or PREDICTED entries mean the predicted class (targets.py)."""
    x = images.detach().clone().requires_grad_()
    with torch.enable_grad():
        logits = model(x)
        targets = resolve_targets(logits, targets)
        relevance, = torch.autograd.grad(logits, x, grad_outputs=start_relevance(logits, targets))
    return logits.detach(), relevance.detach()


def lrp_relevance(model: nn.Module, images: torch.Tensor, targets: Optional[torch.Tensor] = None,
                  composite=None) -> tuple[torch.Tensor, torch.Tensor]:
    """LRP through zennit's hooks (the reference engine): `composite` (default: the spec's) is
    registered for this call and the model restored afterwards. Model in eval mode."""
    composite = composite or default_composite(model)
    with composite.context(model) as hooked:
        return prepared_relevance(hooked, images, targets)
