"""Explaining image files for the CLI and batch jobs: decode -> shared preprocessing -> explain
-> overlay PNG (+ a JSON of the numbers beside it, + one PNG per CRP concept)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..data.decode import decode_image
from ..data.preprocess import preprocess, resize_to_spec
from ..training.rundir import load_run, spec_of
from .api import Explanation, explain
from .render import overlay, png_bytes


def resolve_target(target: Union[None, str, int], classes: list[str]) -> Optional[int]:
    """A class name or index -> index; None stays None (explain the prediction)."""
    if target is None or target == "":
        return None
    if isinstance(target, str) and target in classes:
        return classes.index(target)
    try:
        index = int(target)
    except (TypeError, ValueError):
        raise ValueError(f"unknown target {target!r}: use one of {classes} or an index") from None
    if not 0 <= index < len(classes):
        raise ValueError(f"target {index} out of range: the model has {len(classes)} classes ({classes})")
    return index


def summary(explanation: Explanation) -> dict:
    return {
        "method": explanation.method, "target": explanation.target, "target_label": explanation.target_label,
        "prediction": explanation.prediction, "heatmap_stats": explanation.stats(), "info": explanation.info,
        "concepts": [{"layer": c.layer, "channel": c.channel, "relevance_share": c.relevance_share}
                     for c in explanation.concepts],
    }


def write_explanation(explanation: Explanation, rgb: np.ndarray, out: Path, atlas=None) -> Path:
    """Overlay PNG + JSON; for CRP one overlay per concept, and its reference patches from the
    concept atlas when the run has one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png_bytes(overlay(rgb, explanation.heatmap)))
    data = summary(explanation)
    for k, concept in enumerate(explanation.concepts):
        concept_png = out.with_name(f"{out.stem}.concept{k}-{concept.channel}.png")
        concept_png.write_bytes(png_bytes(overlay(rgb, concept.heatmap.cpu().numpy())))
        data["concepts"][k]["heatmap_png"] = concept_png.name
        patches = atlas.references(concept.channel) if atlas is not None and concept.layer == atlas.layer else []
        if patches:
            refs_png = out.with_name(f"{out.stem}.concept{k}-{concept.channel}.references.png")
            refs_png.write_bytes(png_bytes(np.hstack(patches)))
            data["concepts"][k]["references_png"] = refs_png.name
    out.with_suffix(".json").write_text(json.dumps(data, indent=2))
    return out


def explain_file(run: Path, image: Path, method: str = "lrp", target=None, out: Optional[Path] = None,
                 concepts: int = 8) -> tuple[Path, dict]:
    model, meta = load_run(run)
    spec, classes = spec_of(meta), meta["classes"]
    rgb = decode_image(image)
    x = preprocess(rgb, spec)
    options = {"concepts": concepts} if method == "crp" else {}
    explanation = explain(model, x, resolve_target(target, classes), method, classes, **options)
    out = out or image.with_name(f"{image.stem}.{method}.png")
    atlas = None
    if method == "crp":
        from .service import open_atlas

        atlas = open_atlas(run, model, meta)
    write_explanation(explanation, resize_to_spec(rgb, spec), out, atlas)
    return out, summary(explanation)
