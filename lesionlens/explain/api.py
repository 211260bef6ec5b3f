"""`explain(model, image, target=None, method="lrp")`: the one entry point for every method."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import torch

from .methods import METHODS, Concept
from .targets import PREDICTED


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
    for t in targets or []:
        if t is not None and (int(t) < 0 or (classes and int(t) >= len(classes))):
            known = f"{len(classes)} classes ({list(classes)})" if classes else "class indices from 0"
            raise ValueError(f"target out of range: {int(t)}; the model has {known}")
    wanted = None if targets is None else torch.as_tensor(
        [PREDICTED if t is None else int(t) for t in targets], dtype=torch.long, device=device)
    # the method's own forward gives the prediction too (no separate forward)
    result = METHODS[method](model, x, wanted, **options)
    probs = torch.softmax(result.logits.float(), 1)
    chosen = result.targets
    classes = list(classes) if classes else [str(i) for i in range(probs.shape[1])]
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
