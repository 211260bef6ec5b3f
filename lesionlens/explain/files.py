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
from .render import overlay, png_bytes

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
        "prediction": explanation.prediction, "heatmap_stats": explanation.stats(), "info": explanation.info,
        "concepts": [{"layer": c.layer, "channel": c.channel, "relevance_share": c.relevance_share}
                     for c in explanation.concepts],
    }


def check_concepts(concepts: int) -> int:
    if isinstance(concepts, bool) or not isinstance(concepts, int) or not 1 <= concepts <= MAX_CONCEPTS:
        raise ExplainError(f"concepts must be a whole number from 1 to {MAX_CONCEPTS}, got {concepts!r}")
    return concepts


def write_explanation(explanation: Explanation, rgb: np.ndarray, out: Path, atlas=None) -> Path:
    """Overlay PNG + JSON; for CRP one overlay per concept, and its reference patches from the
    concept atlas when the run has one. Every file is written atomically."""
    write_bytes(out, png_bytes(overlay(rgb, explanation.heatmap)))
    data = summary(explanation)
    for k, concept in enumerate(explanation.concepts):
        concept_png = out.with_name(f"{out.stem}.concept{k}-{concept.channel}.png")
        write_bytes(concept_png, png_bytes(overlay(rgb, concept.heatmap.cpu().numpy())))
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
    if method == "crp":
        check_concepts(concepts)
    model, meta = load_run(run)
    rgb = decode_for(image, meta.preprocessing)
    x = preprocess(rgb, meta.preprocessing)
    options = {"concepts": concepts} if method == "crp" else {}
    explanation = explain(model, x, resolve_target(target, meta.classes), method, meta.classes, **options)
    out = out or image.with_name(f"{image.stem}.{method}.png")
    atlas = None
    if method == "crp":
        from .atlas import open_atlas

        atlas = open_atlas(run, model, meta)
    write_explanation(explanation, resize_to_spec(rgb, meta.preprocessing), out, atlas)
    return out, summary(explanation)
