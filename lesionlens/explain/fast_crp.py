"""CRP's conditional heatmaps on the fast LRP engine, all concepts of an image in one pass.

zennit-crp (`CondAttribution`, exclude_parallel=True) computes a concept's heatmap as: LRP
relevance at the concept layer's output, masked to that channel, pushed from that layer
(never from the logits, so nothing reaches the input around it through a shortcut) down to
the input. Asked for k concepts it repeats the image k times and runs k forward + LRP passes
through zennit's hooks. The lower part of that computation is linear in the masked relevance
and the forward is the same for every concept, so here:

1. one forward + LRP backward (the fast engine) gives the full heatmap and the relevance at
   the concept layer, hence the channel shares and the k channels shown (concept_choice.py);
2. one more forward up to the concept layer only, under `torch.func.vjp`, and its pullback
   vmapped over the k masked relevances: every z+ denominator is computed once per image and
   each concept costs only the transposed convolutions.

Same numbers as zennit-crp with our composite (tested: same channels, cosine >= 0.9999).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .concept_choice import choose_batch
from .targets import resolve_targets, start_relevance


@dataclass
class ConceptRelevance:
    logits: torch.Tensor  # (B, K)
    heatmaps: torch.Tensor  # (B, H, W): the full LRP heatmap
    shares: torch.Tensor  # (B, C): each channel's share of the layer's relevance, sum |.| = 1
    channels: torch.Tensor  # (B, k): the chosen channels (concept_choice.py), in the card's order
    conditional: torch.Tensor  # (B, k, H, W): one heatmap per top channel
    channel_relevance: torch.Tensor  # (B, C): each channel's relevance at the layer
    explained_logit: torch.Tensor  # (B,): the logit the relevance started from


class _ReachedLayer(Exception):
    """Raised by a forward hook to stop the forward at the concept layer (nothing above it
    is needed for the conditional heatmaps)."""


def _capture(module: nn.Module, stop: bool):
    captured = {}

    def hook(_module, _inputs, output):
        captured["output"] = output
        if stop:
            raise _ReachedLayer

    return captured, module.register_forward_hook(hook)


def channel_shares(layer_relevance: torch.Tensor) -> torch.Tensor:
    """crp's ChannelConcept.attribute(abs_norm=True): per-channel relevance over |total|."""
    per_channel = layer_relevance.flatten(2).sum(-1)
    return per_channel / (per_channel.abs().sum(-1, keepdim=True) + 1e-10)


def _layer_forward(model: nn.Module, layer: nn.Module):
    def forward(x: torch.Tensor) -> torch.Tensor:
        captured, handle = _capture(layer, stop=True)
        try:
            model(x)
        except _ReachedLayer:
            pass
        finally:
            handle.remove()
        return captured["output"]

    return forward


def layer_relevance(model: nn.Module, images: torch.Tensor, targets: Optional[torch.Tensor], layer: nn.Module):
    """One forward + LRP backward: (logits, the relevance at `layer`'s output, the input
    relevance, the start relevance at the logits)."""
    x = images.detach().clone().requires_grad_()
    captured, handle = _capture(layer, stop=False)
    try:
        with torch.enable_grad():
            logits = model(x)
            start = start_relevance(logits, resolve_targets(logits, targets))
            at_layer, relevance = torch.autograd.grad(logits, [captured["output"], x], start)
    finally:
        handle.remove()
    return logits, at_layer, relevance, start


def conditional_heatmaps(model: nn.Module, layer: nn.Module, image: torch.Tensor, at_layer: torch.Tensor,
                         channels: torch.Tensor) -> torch.Tensor:
    """(k, H, W): one image's (1, 3, H, W) conditional heatmap per channel in `channels` (k,),
    its relevance `at_layer` (C, h, w) masked to that channel and pushed down to the input."""
    k = len(channels)
    # one mask per concept: the layer's relevance in that channel, zero elsewhere
    masks = torch.zeros((k, 1) + at_layer.shape, dtype=at_layer.dtype, device=at_layer.device)
    masks[torch.arange(k), 0, channels] = at_layer[channels]
    _, pullback = torch.func.vjp(_layer_forward(model, layer), image.detach())
    (per_concept,) = torch.func.vmap(pullback)(masks)  # (k, 1, 3, H, W)
    return per_concept[:, 0].sum(1)


def _concept_relevance(model: nn.Module, images: torch.Tensor, targets: Optional[torch.Tensor], layer_name: str,
                       concepts: int, choice: str) -> ConceptRelevance:
    layer = model.get_submodule(layer_name)
    logits, at_layer, relevance, start = layer_relevance(model, images, targets, layer)
    shares = channel_shares(at_layer)
    top = choose_batch(shares, at_layer, concepts, choice)
    conditional = [conditional_heatmaps(model, layer, images[i:i + 1], at_layer[i], top[i]) for i in range(len(images))]
    return ConceptRelevance(logits.detach(), relevance.detach().sum(1), shares.detach(), top,
                            torch.stack(conditional).detach(), at_layer.flatten(2).sum(-1).detach(),
                            start.sum(1).detach())


def concept_relevance(model: nn.Module, images: torch.Tensor, targets: Optional[torch.Tensor], layer: str,
                      concepts: int, choice: str = "top") -> ConceptRelevance:
    """The full heatmap and `concepts` channels of `layer` (chosen by `choice`,
    concept_choice.py) with a conditional heatmap each, per image, on a model held inside
    `fast_lrp` (the Explainer prepares it)."""
    return _concept_relevance(model, images, targets, layer, concepts, choice)
