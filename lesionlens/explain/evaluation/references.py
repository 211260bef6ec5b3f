"""Reference maps that give explain-eval's numbers a scale, in the methods' signature.

- gradient: d logit / d input (captum's Saliency without abs, summed over colour channels);
  its sign says which way a pixel would move the logit, not evidence, so localisation scores
  its magnitude;
- input_x_gradient: captum's InputXGradient, the simplest attribution;
- random: Gaussian noise, the same whatever the model (seeded per image position in the run);
- edge: a Sobel edge map of the image, a map that ignores the model entirely; the
  randomisation check must flag it (the negative control of Adebayo et al. 2018).
"""

from __future__ import annotations

import numpy as np
import torch

from ..methods import MethodResult
from ..targets import resolve_targets


def _logits_and_targets(model, images, targets):
    with torch.no_grad():
        logits = model(images)
    return logits, resolve_targets(logits, targets)


def gradient(model, images, targets, **_options) -> MethodResult:
    from captum.attr import Saliency

    logits, targets = _logits_and_targets(model, images, targets)
    with torch.enable_grad():
        maps = Saliency(model).attribute(images.detach().clone().requires_grad_(), target=targets, abs=False)
    return MethodResult(maps.detach().sum(1), logits, targets)


def input_x_gradient(model, images, targets, **_options) -> MethodResult:
    from captum.attr import InputXGradient

    logits, targets = _logits_and_targets(model, images, targets)
    with torch.enable_grad():
        maps = InputXGradient(model).attribute(images.detach().clone().requires_grad_(), target=targets)
    return MethodResult(maps.detach().sum(1), logits, targets)


def random_map(model, images, targets, *, seed: int = 0, **_options) -> MethodResult:
    logits, targets = _logits_and_targets(model, images, targets)
    rng = np.random.default_rng(seed)
    maps = torch.from_numpy(rng.standard_normal((len(images),) + tuple(images.shape[-2:])).astype(np.float32))
    return MethodResult(maps, logits, targets)


def edge(model, images, targets, **_options) -> MethodResult:
    logits, targets = _logits_and_targets(model, images, targets)
    gray = images.detach().mean(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])[None, None]
    gx = torch.nn.functional.conv2d(gray, kx, padding=1)
    gy = torch.nn.functional.conv2d(gray, kx.transpose(-1, -2), padding=1)
    return MethodResult(torch.sqrt(gx ** 2 + gy ** 2)[:, 0], logits, targets)


# name -> (function, is the sign evidence?)
REFERENCES = {"gradient": (gradient, False), "input_x_gradient": (input_x_gradient, True),
              "random": (random_map, True), "edge": (edge, False)}
