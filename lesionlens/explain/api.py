"""`explain(model, image, target=None, method="lrp")`: the one entry point for every method."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import torch

from .methods import METHODS, Concept


@dataclass
class Explanation:
    """A signed heatmap at input resolution and what it explains."""

    heatmap: np.ndarray  # (H, W) float32, signed
    method: str
    target: int  # class index explained
    target_label: str
    prediction: dict  # {"label": str, "index": int, "probabilities": {class: p}}
    concepts: list[Concept] = field(default_factory=list)  # CRP: top concepts with their heatmaps
    info: dict = field(default_factory=dict)

    def stats(self) -> dict:
        h = self.heatmap
        return {"sum": float(h.sum()), "min": float(h.min()), "max": float(h.max()),
                "abs_mean": float(np.abs(h).mean()), "positive_fraction": float((h > 0).mean())}


def _as_batch(image: Union[torch.Tensor, np.ndarray]) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image, dtype=torch.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a preprocessed image (3, H, W) or batch (B, 3, H, W), got {tuple(x.shape)}")
    return x


def explain_batch(model: torch.nn.Module, images, targets: Optional[Sequence[int]] = None, method: str = "lrp",
                  classes: Optional[Sequence[str]] = None, **options) -> list[Explanation]:
    """Explain a batch of preprocessed images (B, 3, H, W); one Explanation per image.
    targets: class index per image, None for "the predicted class" (the default for all). options go to the method
    (`composite` for lrp/crp, `concepts` and `layer` for crp)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {sorted(METHODS)}")
    model.eval()
    device = next(model.parameters()).device
    x = _as_batch(images).to(device)
    with torch.no_grad():
        probs = torch.softmax(model(x), 1)
    num_classes = probs.shape[1]
    classes = list(classes) if classes else [str(i) for i in range(num_classes)]
    predicted = probs.argmax(1)
    chosen = predicted if targets is None else torch.as_tensor(
        [int(predicted[i]) if t is None else int(t) for i, t in enumerate(targets)], device=device)
    if ((chosen < 0) | (chosen >= num_classes)).any():
        raise ValueError(f"target out of range: the model has {num_classes} classes ({classes})")
    result = METHODS[method](model, x, chosen, **options)
    explanations = []
    for i in range(len(x)):
        p = probs[i].cpu().numpy()
        explanations.append(Explanation(
            heatmap=result.heatmaps[i].detach().float().cpu().numpy(),
            method=method, target=int(chosen[i]), target_label=classes[int(chosen[i])],
            prediction={"label": classes[int(p.argmax())], "index": int(p.argmax()),
                        "probabilities": {c: float(v) for c, v in zip(classes, p)}},
            concepts=result.concepts[i] if result.concepts else [],
            info=dict(result.info),
        ))
    return explanations


def explain(model: torch.nn.Module, image, target: Optional[int] = None, method: str = "lrp",
            classes: Optional[Sequence[str]] = None, **options) -> Explanation:
    """Explain one preprocessed image (3, H, W) with `method` in lrp, crp, gradcam, attention."""
    return explain_batch(model, image, None if target is None else [target], method, classes, **options)[0]
