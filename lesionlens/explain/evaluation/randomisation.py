"""The cascading model-parameter randomisation of Adebayo et al. 2018, stage by stage.

Starting from the head, each step re-initialises one more of the architecture's stages
(`ArchitectureSpec.stages`, bottom-up there; top-down here). Re-initialising means each
module's own `reset_parameters()` (and, for BatchNorm, `reset_running_stats()`), as Quantus'
ModelParameterRandomisation does, so a randomised layer is drawn from the distribution the
model was initialised from. Quantus cascades layer by layer (161 steps on ResNet50); by stage
the curve has 6-9 points and each is one explanation pass.

An explanation that explains the model changes when the model does: the Spearman correlation
of the maps before and after falls. One that does not (an edge detector, or z+ rules that
converge to one map) stays near 1.
"""

from __future__ import annotations

import copy
from typing import Iterator

import torch
from torch import nn

from ..rules import stage_modules


def _reset(module: nn.Module) -> None:
    for child in module.modules():
        if hasattr(child, "reset_parameters") and any(True for _ in child.parameters(recurse=False)):
            child.reset_parameters()
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and child.track_running_stats:
            child.reset_running_stats()


def cascade(model: nn.Module, seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """Yield (stage label, model with that stage and every stage above it re-initialised),
    from the head down, on one copy of `model` (each step builds on the previous one)."""
    from ...training.models import spec_of_model

    stages = stage_modules(spec_of_model(model).stages)
    randomised = copy.deepcopy(model).eval()
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for names in reversed(stages):
            for name in names:
                _reset(randomised.get_submodule(name))
            randomised.eval()
            yield "+".join(names), randomised
    finally:
        torch.random.set_rng_state(generator_state)
