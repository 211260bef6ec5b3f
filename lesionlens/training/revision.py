"""A revised model's fixed parts (`lesionlens revise`): P-ClArC's projection, as a module the
model carries, so a revised run loads, exports to ONNX and explains like any other.

P-ClArC (Anders et al. 2022) removes an artifact's direction from a layer's activations without
retraining: with `v` the artifact's concept activation vector (unit length, over the layer's
channels) and `z` the clean images' mean position along it, every spatial position's channel
vector a becomes  a - v (v . a - z). The module holds v and z as buffers (saved in the weights
file, so model.json's sha256 covers them) and is applied by a forward hook on the layer, which
keeps the layer's own parameter names, so the parent's weights load unchanged.

Torch is imported by the caller: this module is only reached from code that already holds a model.
"""

from __future__ import annotations

import torch
from torch import nn

PROJECTION = "concept_projection"  # the submodule name: its buffers are "concept_projection.vector" / ".offset"


class ConceptProjection(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("vector", torch.zeros(channels))
        self.register_buffer("offset", torch.zeros(()))

    def forward(self, activations: torch.Tensor) -> torch.Tensor:
        v = self.vector.view(1, -1, *([1] * (activations.dim() - 2)))
        along = (activations * v).sum(1, keepdim=True)
        return activations - v * (along - self.offset)


def _channels(layer: nn.Module, model: nn.Module, name: str) -> int:
    """The number of channels `layer` outputs, from one tiny forward pass."""
    seen = {}

    def hook(module, inputs, output) -> None:  # returning anything would replace the output
        seen["c"] = output.shape[1]

    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            was = model.training
            model.eval()
            model(torch.zeros(1, 3, 64, 64))
            model.train(was)
    finally:
        handle.remove()
    if "c" not in seen:
        raise ValueError(f"layer {name!r} did not run in a forward pass")
    return int(seen["c"])


def attach_projection(model: nn.Module, layer_name: str, vector=None, offset=None) -> ConceptProjection:
    """Give `model` a ConceptProjection after `layer_name` (zeros until `vector` is given or the
    weights are loaded): registered as a submodule (its buffers are in the state dict) and applied
    by a forward hook on the layer."""
    layer = model.get_submodule(layer_name)
    projection = ConceptProjection(_channels(layer, model, layer_name))
    if vector is not None:
        projection.vector.copy_(torch.as_tensor(vector, dtype=torch.float32))
        projection.offset.fill_(float(offset))
    model.add_module(PROJECTION, projection)
    layer.register_forward_hook(lambda module, inputs, output: projection(output))
    return projection


def apply_revision(model: nn.Module, revision: dict) -> nn.Module:
    """Before loading a revised run's weights: rebuild the fixed parts its method added."""
    if revision and revision.get("method") == "pclarc":
        attach_projection(model, revision["layer"])
    return model
