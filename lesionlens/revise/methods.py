"""The ClArC pieces (Anders et al. 2022; Pahde et al. 2023, "Reveal to Revise"): the artifact's
concept activation vector at a layer, and RR-ClArC's loss on the output's gradient along it."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn


@contextmanager
def _capture(layer: nn.Module, keep_graph: bool = False):
    seen: dict = {}

    def hook(module, inputs, output):
        seen["a"] = output if keep_graph else output.detach()

    handle = layer.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


@torch.no_grad()
def pooled_activations(model: nn.Module, layer_name: str, images: torch.Tensor, batch: int = 32) -> np.ndarray:
    """(n, channels): the layer's activations averaged over space, model in eval mode."""
    model.eval()
    layer, out = model.get_submodule(layer_name), []
    with _capture(layer) as seen:
        for i in range(0, len(images), batch):
            model(images[i:i + batch])
            a = seen["a"]
            out.append((a.mean(dim=tuple(range(2, a.dim()))) if a.dim() > 2 else a).numpy())
    return np.concatenate(out)


def concept_vector(activations: np.ndarray, carries: np.ndarray, seed: int = 0) -> dict:
    """The artifact's direction from (n, c) activations of carrying and clean images.

    A logistic regression (scikit-learn) separates them; its weights are a *filter*, which also
    cancels unrelated variation, so the direction used is the *pattern* (Haufe et al. 2014: the
    activations' covariance times the filter), which points where the artifact moves the
    activations: what P-ClArC must remove. Returns the unit vector, the clean images' mean
    position along it, and the classifier's cross-validated accuracy (how findable it was)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.preprocessing import StandardScaler

    x = activations.astype(np.float64)
    y = carries.astype(int)
    scaler = StandardScaler().fit(x)
    z = scaler.transform(x)
    classifier = LogisticRegression(C=0.1, max_iter=2000, random_state=seed)
    folds = int(min(5, y.sum(), (1 - y).sum()))
    accuracy = float(cross_val_score(classifier, z, y, cv=folds).mean()) if folds >= 2 else None
    classifier.fit(z, y)
    filter_ = classifier.coef_[0] / scaler.scale_  # back to the activations' own units
    pattern = np.cov(x, rowvar=False) @ filter_
    vector = pattern / (np.linalg.norm(pattern) + 1e-12)
    if (x[y == 1] @ vector).mean() < (x[y == 0] @ vector).mean():
        vector = -vector  # pointing towards the artifact
    offset = float((x[y == 0] @ vector).mean())
    return {"vector": vector.astype(np.float32), "offset": offset, "cv_accuracy": accuracy}


class RightReasonLoss:
    """RR-ClArC: strength * mean over the batch of (d logit_k / d t)^2, where t shifts the
    layer's activations along the artifact's direction v at every position and k is the class the
    artifact pushes towards: the output may not change when the artifact's direction does."""

    def __init__(self, layer_name: str, vector: np.ndarray, class_index: int, strength: float):
        self.layer_name, self.class_index, self.strength = layer_name, class_index, strength
        self.vector = torch.as_tensor(vector, dtype=torch.float32)

    def forward_with_penalty(self, model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        layer = model.get_submodule(self.layer_name)
        with _capture(layer, keep_graph=True) as seen:
            logits = model(x)
        a = seen["a"]
        grad = torch.autograd.grad(logits[:, self.class_index].sum(), a, create_graph=True)[0]
        v = self.vector.view(1, -1, *([1] * (grad.dim() - 2)))
        along = (grad * v).flatten(1).sum(1)  # d logit / d (a shift along v everywhere)
        return logits, self.strength * (along ** 2).mean()
