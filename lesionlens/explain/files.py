"""Explaining image files for the CLI and batch jobs: decode -> shared preprocessing -> explain
-> overlay PNG (+ a JSON of the numbers beside it, + one PNG per CRP concept)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from .._io import write_bytes, write_json
from ..data.preprocess import decode_for, preprocess, resize_to_spec
from ..errors import ExplainError
from ..training.rundir import load_run
from .api import Explanation, explain
from .render import figure, png_bytes

MAX_CONCEPTS = 64  # what a person can look at; the CLI and the sidecar refuse more


def resolve_target(target: Union[None, str, int], classes: list[str]) -> Optional[int]:
    """A class name or index -> index; None stays None (explain the prediction)."""
    if target is None or target == "":
        return None
    if isinstance(target, str) and target in classes:
        return classes.index(target)
    try:
        index = int(target)
    except (TypeError, ValueError):
        raise ExplainError(f"unknown target {target!r}: use one of {classes} or an index") from None
    if not 0 <= index < len(classes):
        raise ExplainError(f"target {index} out of range: the model has {len(classes)} classes ({classes})")
    return index


def summary(explanation: Explanation) -> dict:
    return {
        "method": explanation.method, "target": explanation.target, "target_label": explanation.target_label,
        "prediction": explanation.prediction, "heatmap_stats": explanation.stats(),
        "info": {k: v for k, v in explanation.info.items() if k != "regions"},  # the region is drawn, not listed
        "concepts": [{"layer": c.layer, "channel": c.channel, "relevance_share": c.relevance_share,
                      "share_of_logit": c.share_of_logit, "layer_share_of_logit": c.layer_share_of_logit,
                      "decision_share": c.decision_share}
                     for c in explanation.concepts],
    }


def check_concepts(concepts: int) -> int:
    if isinstance(concepts, bool) or not isinstance(concepts, int) or not 1 <= concepts <= MAX_CONCEPTS:
        raise ExplainError(f"concepts must be a whole number from 1 to {MAX_CONCEPTS}, got {concepts!r}")
    return concepts


METHOD_TITLES = {
    "lrp": "LRP: what in the image made the model say '{label}'",
    "crp": "LRP (CRP's full map): evidence for '{label}'",
    "gradcam": "Grad-CAM at the last feature map: where evidence for '{label}' sits (coarse)",
    "attention": "Attention: where the model pools its features (the same for every class)",
    "attention_crp": "Inside the attended region: evidence for '{label}' (outline: the region)",
}


def figure_for(explanation: Explanation, rgb: np.ndarray) -> np.ndarray:
    """The readable picture of an explanation: title, image beside overlay, colour bar."""
    label = explanation.target_label
    p = explanation.prediction["probabilities"].get(label)
    notes = [f"prediction: {explanation.prediction['label']}" + (f"; p({label}) = {p:.2f}" if p is not None else "")]
    if explanation.method == "attention":
        notes.append("not class evidence: attention weights, >= 0, scaled to the largest")
    heatmap = explanation.heatmap
    image = rgb
    region = explanation.info.get("regions")
    if region is not None:
        image = _outline(rgb, np.asarray(region, dtype=bool), heatmap.shape)
    return figure(image, heatmap, title=METHOD_TITLES[explanation.method].format(label=label),
                  target_label=label, notes=tuple(notes), signed=explanation.method not in ("gradcam", "attention"))


def concept_figure(explanation: Explanation, concept, rgb: np.ndarray) -> np.ndarray:
    share = concept.decision_share
    if share is not None:
        what = f"{share:+.0%} of the decision"
    else:
        layer = concept.layer_share_of_logit
        what = ("share of the decision not shown: the layer carries "
                + (f"{layer:.0%} of the logit" if layer is not None else "an unknown part of the logit"))
    inside = " inside the attended region" if explanation.method == "attention_crp" else ""
    return figure(rgb, concept.heatmap.cpu().numpy(),
                  title=f"concept {concept.layer}:{concept.channel}{inside}", target_label=explanation.target_label,
                  notes=(what, f"{concept.relevance_share:+.0%} of the layer's relevance{inside}"))


def _outline(rgb: np.ndarray, region: np.ndarray, shape) -> np.ndarray:
    import cv2

    sized = cv2.resize(rgb, (shape[1], shape[0]), interpolation=cv2.INTER_AREA).copy()
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(sized, contours, -1, (0, 200, 0), 1)
    return sized


def write_explanation(explanation: Explanation, rgb: np.ndarray, out: Path, atlas=None) -> Path:
    """The readable figure (PNG) + JSON; for CRP one figure per concept, and its reference
    patches from the concept atlas when the run has one. Every file is written atomically."""
    write_bytes(out, png_bytes(figure_for(explanation, rgb)))
    data = summary(explanation)
    for k, concept in enumerate(explanation.concepts):
        concept_png = out.with_name(f"{out.stem}.concept{k}-{concept.channel}.png")
        write_bytes(concept_png, png_bytes(concept_figure(explanation, concept, rgb)))
        data["concepts"][k]["heatmap_png"] = concept_png.name
        patches = atlas.references(concept.channel) if atlas is not None and concept.layer == atlas.layer else []
        if patches:
            refs_png = out.with_name(f"{out.stem}.concept{k}-{concept.channel}.references.png")
            write_bytes(refs_png, png_bytes(np.hstack(patches)))
            data["concepts"][k]["references_png"] = refs_png.name
    write_json(out.with_suffix(".json"), data)
    return out


def explain_file(run: Path, image: Path, method: str = "lrp", target=None, out: Optional[Path] = None,
                 concepts: int = 8) -> tuple[Path, dict]:
    if method in ("crp", "attention_crp"):
        check_concepts(concepts)
    model, meta = load_run(run)
    rgb = decode_for(image, meta.preprocessing)
    x = preprocess(rgb, meta.preprocessing)
    options = {"concepts": concepts} if method in ("crp", "attention_crp") else {}
    explanation = explain(model, x, resolve_target(target, meta.classes), method, meta.classes, **options)
    out = out or image.with_name(f"{image.stem}.{method}.png")
    atlas = None
    if method in ("crp", "attention_crp"):
        from .atlas import open_atlas

        atlas = open_atlas(run, model, meta)
    write_explanation(explanation, resize_to_spec(rgb, meta.preprocessing), out, atlas)
    return out, summary(explanation)
