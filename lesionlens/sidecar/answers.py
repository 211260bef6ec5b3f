"""An explanation as the sidecar's JSON answer: the numbers (explain.files.summary) and the same
readable figures the CLI writes (image | overlay, title, colour bar), as base64 PNGs; for CRP
one figure per concept, with its reference patches when the run has a concept atlas."""

from __future__ import annotations

import base64

import numpy as np


def _b64_png(rgb: np.ndarray) -> str:
    from ..explain.render import png_bytes

    return base64.b64encode(png_bytes(rgb)).decode()


def answer(explanation, rgb: np.ndarray, weights_sha256: str, atlas=None) -> dict:
    """`rgb`: the image at the model's input size (what the heatmap covers)."""
    from ..explain.files import concept_figure, figure_for, summary

    result = summary(explanation)
    result["weights_sha256"] = weights_sha256
    result["overlay_png_base64"] = _b64_png(figure_for(explanation, rgb))
    for concept, entry in zip(explanation.concepts, result["concepts"]):
        in_atlas = atlas is not None and concept.layer == atlas.layer
        entry["name"] = atlas.name(concept.channel) if in_atlas else None
        entry["overlay_png_base64"] = _b64_png(concept_figure(explanation, concept, rgb, entry["name"]))
        if in_atlas:
            patches = atlas.references(concept.channel)
            entry["reference_patches_png_base64"] = _b64_png(np.hstack(patches)) if patches else None
    return result
