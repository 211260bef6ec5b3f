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
from .render import COARSE_METHODS, figure, png_bytes

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
                      "decision_share": c.decision_share, "evidence_share": c.evidence_share}
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


FRAME_WARNING = 0.25  # share of the evidence on a detected frame from which the figure warns


def evidence_on_frame(rgb: np.ndarray, heatmap: np.ndarray) -> Optional[tuple[float, float]]:
    """(share of the map's positive evidence on the detected dark frame, the frame's share of
    the image), or None when the photo shows no frame (or the map no positive evidence)."""
    import cv2

    from ..data.dark_field import detect_dark_field

    sized = cv2.resize(rgb, (heatmap.shape[1], heatmap.shape[0]), interpolation=cv2.INTER_AREA)
    field = detect_dark_field(sized)
    positive = np.clip(heatmap, 0, None)
    if not field.is_ring or positive.sum() <= 0:
        return None
    region = field.region(*heatmap.shape)
    return float(positive[region].sum() / positive.sum()), float(region.mean())


def frame_note(explanation: Explanation, rgb: np.ndarray) -> Optional[str]:
    """The figure's words about a dark frame, when the photo has one: how much of the evidence
    for the class lies on it. Pictures alone did not say it: a benign lesion with dark corners
    read "melanoma 96%" while its map showed faint squares on the lesion and one in a corner."""
    if explanation.method == "attention":  # not class evidence
        return None
    found = evidence_on_frame(rgb, explanation.heatmap)
    if found is None:
        return None
    share, area = found
    label = explanation.target_label
    if share >= FRAME_WARNING:
        return (f"WARNING: {share:.0%} of the evidence for '{label}' lies on the dark frame around the field of "
                f"view ({area:.0%} of the image), not on the lesion: a shortcut (see lesionlens audit)")
    return f"dark frame detected ({area:.0%} of the image): {share:.0%} of the evidence for '{label}' lies on it"


def figure_for(explanation: Explanation, rgb: np.ndarray) -> np.ndarray:
    """The readable picture of an explanation: title, image beside overlay, colour bar; a note
    when the evidence lies on a detected dark frame."""
    label = explanation.target_label
    p = explanation.prediction["probabilities"].get(label)
    notes = [f"prediction: {explanation.prediction['label']}" + (f"; p({label}) = {p:.2f}" if p is not None else "")]
    if explanation.method == "attention":
        notes.append("not class evidence: attention weights, >= 0, scaled to the largest")
    frame = frame_note(explanation, rgb)
    if frame:
        notes.append(frame)
    heatmap = explanation.heatmap
    image = rgb
    region = explanation.info.get("regions")
    if region is not None:
        image = _outline(rgb, np.asarray(region, dtype=bool), heatmap.shape)
    signed = explanation.method not in COARSE_METHODS
    return figure(image, heatmap, title=METHOD_TITLES[explanation.method].format(label=label),
                  target_label=label, notes=tuple(notes), signed=signed, grid=_grid(explanation))


def _grid(explanation: Explanation) -> Optional[int]:
    """The input grid a relevance map is smoothed over for drawing (render.display_map). Grad-CAM
    and attention maps are upsampled from a coarse map already: drawn as they are."""
    if explanation.method in COARSE_METHODS:
        return None
    return explanation.info.get("input_grid")


def concept_share_text(concept, label: str) -> str:
    """One share per concept, with one meaning: its relevance as a share of the explained
    logit's size, + for evidence for the class (red), - against (blue); see
    Concept.evidence_share. A card used to show the share of the logit and the share of the
    layer's relevance side by side: "-5% of the decision" beside "+1% of the layer's relevance"
    for one red concept. Where the layer does not carry the logit (its total far from it) the
    share means little, and the card says so."""
    share = concept.evidence_share
    if share is not None:
        side = "for" if share >= 0 else "against"
        return f"{share:+.0%} of the logit's size: evidence {side} '{label}'"
    layer = concept.layer_share_of_logit
    return ("its part of the evidence not shown: this layer carries "
            + (f"{layer:.0%} of the logit" if layer is not None else "an unknown part of the logit"))


def concept_figure(explanation: Explanation, concept, rgb: np.ndarray, name: Optional[dict] = None) -> np.ndarray:
    """One concept's card; `name` (ConceptAtlas.name) says which feature it is, where known."""
    from .feature_names import label

    inside = " inside the attended region" if explanation.method == "attention_crp" else ""
    notes = (concept_share_text(concept, explanation.target_label),)
    if name:
        notes += (f"on its top training images: {label(name)}",)
    return figure(rgb, concept.heatmap.cpu().numpy(),
                  title=f"concept {concept.layer}:{concept.channel}{inside}", target_label=explanation.target_label,
                  notes=notes, grid=_grid(explanation))


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
        name = atlas.name(concept.channel) if atlas is not None and concept.layer == atlas.layer else None
        write_bytes(concept_png, png_bytes(concept_figure(explanation, concept, rgb, name)))
        data["concepts"][k]["heatmap_png"] = concept_png.name
        data["concepts"][k]["name"] = name
        patches = atlas.references(concept.channel) if atlas is not None and concept.layer == atlas.layer else []
        if patches:
            refs_png = out.with_name(f"{out.stem}.concept{k}-{concept.channel}.references.png")
            write_bytes(refs_png, png_bytes(np.hstack(patches)))
            data["concepts"][k]["references_png"] = refs_png.name
    write_json(out.with_suffix(".json"), data)
    return out


def explain_file(run: Path, image: Path, method: str = "lrp", target=None, out: Optional[Path] = None,
                 concepts: int = 8, concept_choice: Optional[str] = None) -> tuple[Path, dict]:
    if method in ("crp", "attention_crp"):
        check_concepts(concepts)
    model, meta = load_run(run)
    rgb = decode_for(image, meta.preprocessing)
    x = preprocess(rgb, meta.preprocessing)
    options = {"concepts": concepts, "concept_choice": concept_choice} if method in ("crp", "attention_crp") else {}
    explanation = explain(model, x, resolve_target(target, meta.classes), method, meta.classes, **options)
    out = out or image.with_name(f"{image.stem}.{method}.png")
    atlas = None
    if method in ("crp", "attention_crp"):
        from .atlas import open_atlas

        atlas = open_atlas(run, model, meta)
    write_explanation(explanation, resize_to_spec(rgb, meta.preprocessing), out, atlas)
    return out, summary(explanation)
