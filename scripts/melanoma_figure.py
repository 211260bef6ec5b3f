"""One held-out melanoma of the main job beside what the generator knows about it and what each
map says: the photo, its melanoma-feature masks (outlined, named), LRP with the default rules as
the product draws it (smoothed over the input grid: render.display_map) and raw, LRP with any other
recipes asked for, the plain gradient, input x gradient and Grad-CAM, each with the share of its
positive evidence (as drawn) on the melanoma features, and the CRP concepts its card shows
first (the architecture's concept choice, or --concept-choice), each named by the feature its
relevance falls on in this photo. The figure the README shows.

    .venv/bin/python scripts/melanoma_figure.py [--out out] [--arch resnet50] [--index K]
        [--recipes epsilon_shared+first=wsquare,...] [--layer layer2] [--concept-choice top|distinct]
        --save docs/img/melanoma-features.png

`--index` picks the K-th melanoma called melanoma among the held-out images that carry at least
three melanoma features (so there is something to point at).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from lesionlens.explain.concept_choice import CHOICES

SIZE = 224  # px per panel: large enough to see a globule
CONCEPTS = 4  # the CRP concepts drawn, as explain-eval's purity counts them


def _panel(rgb: np.ndarray, heatmap: np.ndarray, title: str, share: float | None, line: str = "") -> np.ndarray:
    from lesionlens.explain.render import colour_scale, overlay

    big = cv2.resize(rgb, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    heat = cv2.resize(heatmap.astype(np.float32), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    panel = overlay(big, heat, scale=colour_scale(heat))
    return _titled(panel, title, line if share is None else f"{share:.0%} of its evidence on melanoma features")


LINE = 40  # characters that fit a panel's width at the caption's font


def _titled(panel: np.ndarray, title: str, line: str) -> np.ndarray:
    """The panel under a title and up to two caption lines (a longer caption wraps at a comma)."""
    top = np.full((52, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(top, title[:34], (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
    first, rest = line, ""
    if len(line) > LINE and ", " in line[:LINE]:
        cut = line[:LINE].rindex(", ")
        first, rest = line[:cut + 1], line[cut + 2:]
    for row, text in ((32, first), (47, rest)):
        cv2.putText(top, text[:LINE], (4, row), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (20, 20, 20), 1, cv2.LINE_AA)
    return np.vstack([top, panel])


def main() -> None:
    import torch

    from lesionlens.data.synth import MELANOMA_FEATURES
    from lesionlens.explain.evaluation.data import load_eval_images
    from lesionlens.explain.evaluation.runner import as_drawn, parse_methods
    from lesionlens.explain.input_grid import stem_stride
    from lesionlens.training.models import spec_of_model
    from lesionlens.training.rundir import load_run

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out"))
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--recipes", default="")
    parser.add_argument("--layer", default=None, help="CRP's concept layer (default: the architecture's)")
    parser.add_argument("--concept-choice", default=None, choices=CHOICES,
                        help="which concepts: default, the architecture's")
    parser.add_argument("--save", type=Path, required=True)
    args = parser.parse_args()

    model, meta = load_run(args.out / args.arch / "run")
    spec = spec_of_model(model)
    data = load_eval_images(args.out / "synth-heldout", meta.preprocessing, meta.classes, 120, seed=0)
    positive = meta.positive_index
    with torch.no_grad():
        called = model(torch.from_numpy(data.images)).argmax(1).numpy()
    rich = [i for i in range(len(data.labels)) if data.labels[i] == positive and called[i] == positive
            and sum(name in data.feature_masks and data.feature_masks[name][i].any() for name in MELANOMA_FEATURES) >= 3]
    i = rich[args.index]
    rgb = data.rgb[i]
    features = np.zeros(rgb.shape[:2], bool)
    big = cv2.resize(rgb, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    outlined = big.copy()
    colours = [(0, 90, 255), (0, 200, 0), (255, 0, 255), (0, 230, 230), (255, 140, 0), (120, 0, 200), (255, 255, 0)]
    named = []
    for colour, name in zip(colours, MELANOMA_FEATURES):
        mask = data.feature_masks.get(name)
        if mask is None or not mask[i].any():
            continue
        features |= mask[i]
        contours, _ = cv2.findContours(cv2.resize(mask[i].astype(np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST),
                                       cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(outlined, contours, -1, colour, 1)
        named.append(name.replace("_", " "))
    panels = [_titled(big, f"melanoma ({data.paths[i].name})", "the photo"),
              _titled(outlined, "melanoma features (generator)", ", ".join(named))]
    names = ["lrp"] + [f"lrp:{r}" for r in args.recipes.split(",") if r] + ["gradient", "input_x_gradient", "gradcam"]
    x = torch.from_numpy(data.images[i:i + 1])
    target = torch.tensor([positive])
    grid = stem_stride(model)

    def add(heat: np.ndarray, signed: bool, title: str) -> None:
        evidence = np.clip(heat, 0, None) if signed else np.abs(heat)
        share = float(evidence[features].sum() / evidence.sum()) if evidence.sum() > 0 else None
        panels.append(_panel(rgb, heat if signed else np.abs(heat), title, share))

    for method in parse_methods(names, spec, 0):
        heat = method.compute(model, x, target, 1).heatmaps[0].numpy()
        # drawn as the product draws it: smoothed over the input grid (Grad-CAM as it is); a map
        # whose sign means nothing (the gradient) as |map|, smoothed (explain-eval's as_drawn)
        drawn = heat if method.kind == "gradcam" else as_drawn(heat[None], method.signed_evidence, grid)[0]
        add(drawn, method.signed_evidence, method.name if method.name != "lrp" else "lrp, as drawn (default rules)")
        if method.name == "lrp":
            add(heat, True, f"lrp raw ({grid}-px grid, not smoothed)")
    # the card's first CRP concepts, each named by the feature mask its relevance falls on in this image
    # (the atlas names a concept from its top training images instead: explain's cards)
    from lesionlens.explain.api import explain
    from lesionlens.explain.feature_names import label, name_from, regions_of, shares

    from lesionlens.data.synth import FEATURES

    # only the generator's feature names: a CSV's column is data, not a label to print
    regions = regions_of({name: masks[i] for name, masks in data.feature_masks.items() if name in FEATURES},
                         data.artifact_masks[i], data.lesion_masks[i])
    crp = explain(model, x[0], positive, "crp", meta.classes, concepts=CONCEPTS, layer=args.layer,
                  concept_choice=args.concept_choice)
    for concept in crp.concepts:
        heat = concept.heatmap.numpy()
        share = concept.evidence_share
        title = f"{concept.layer} {concept.channel}" + ("" if share is None else f": {share:+.0%} of the logit")
        name = name_from([shares(heat, regions)])
        if name is None:
            name = "no positive relevance"
        elif name["region"] == "mixed":  # label()'s sentence does not fit a panel's line
            name = f"mixed: best region {name['share']:.0%}"
        else:
            name = label(name)
        panels.append(_panel(rgb, as_drawn(heat[None], True, grid)[0], title, None, name))
    rows = [np.hstack(panels[k:k + 4] + [np.full_like(panels[0], 255)] * (4 - len(panels[k:k + 4])))
            for k in range(0, len(panels), 4)]
    from lesionlens.explain.render import png_bytes

    args.save.parent.mkdir(parents=True, exist_ok=True)
    args.save.write_bytes(png_bytes(np.vstack(rows)))
    print(f"{args.save}: {data.paths[i]}")


if __name__ == "__main__":
    main()
