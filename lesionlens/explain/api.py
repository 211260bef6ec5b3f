"""`explain(model, image, target=None, method="lrp")`: the one-shot entry point for every method,
and the `Explanation` every method returns. Long-lived callers hold an `Explainer` instead."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch

from .explainer import Explainer
from .methods import Concept


@dataclass
class Explanation:
    """A signed heatmap at input resolution and what it explains."""

    heatmap: np.ndarray  # (H, W) float32, signed
    method: str
    target: int  # class index explained
    target_label: str
    prediction: dict  # {"label": str, "index": int, "probabilities": {class: p}}
    concepts: list[Concept] = field(default_factory=list)  # CRP: the concepts shown, with their heatmaps
    info: dict = field(default_factory=dict)

    def stats(self) -> dict:
        h = self.heatmap
        return {"sum": float(h.sum()), "min": float(h.min()), "max": float(h.max()),
                "abs_mean": float(np.abs(h).mean()), "positive_fraction": float((h > 0).mean())}


def explain_batch(model: torch.nn.Module, images, targets: Optional[Sequence[Optional[int]]] = None,
                  method: str = "lrp", classes: Optional[Sequence[str]] = None, *, engine: Optional[str] = None,
                  concepts: Optional[int] = None, layer: Optional[str] = None,
                  concept_choice: Optional[str] = None) -> list[Explanation]:
    """Explain a batch of preprocessed images (B, 3, H, W); one Explanation per image. The model
    is prepared for this call and restored afterwards (see Explainer for the options)."""
    with Explainer(model, method, classes=classes, engine=engine, concepts=concepts, layer=layer,
                   concept_choice=concept_choice, copy=False) as explainer:
        return explainer.explain(images, targets)


def explain(model: torch.nn.Module, image, target: Optional[int] = None, method: str = "lrp",
            classes: Optional[Sequence[str]] = None, *, engine: Optional[str] = None,
            concepts: Optional[int] = None, layer: Optional[str] = None,
            concept_choice: Optional[str] = None) -> Explanation:
    """Explain one preprocessed image (3, H, W) with `method` in lrp, crp, gradcam, attention."""
    return explain_batch(model, image, None if target is None else [target], method, classes,
                         engine=engine, concepts=concepts, layer=layer, concept_choice=concept_choice)[0]
