"""Draw what an unstable explanation looks like: one held-out image's LRP map, and the map of
the same image plus imperceptible noise (uniform in +-0.02, explain-eval's noise floor), under
the architecture's default rules and under another recipe (default: the rules without their
stabiliser). The image is the one, among the first --n, whose --compare map moves most.

    .venv/bin/python scripts/stability_figure.py [--run out/efficientnet_b0_relu/run] \\
        [--data out/synth-heldout] [--compare zplus_epsilon2_shared] [--n 64] --save PNG
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    import torch

    from lesionlens.explain import Explainer
    from lesionlens.explain.evaluation import metrics
    from lesionlens.explain.evaluation.data import load_eval_images
    from lesionlens.explain.evaluation.runner import SENSITIVITY_RADIUS, with_input_noise
    from lesionlens.explain.input_grid import stem_stride
    from lesionlens.explain.render import figure, png_bytes
    from lesionlens.explain.rules import without_stabiliser
    from lesionlens.training.models import spec_of_model
    from lesionlens.training.rundir import load_run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("out/efficientnet_b0_relu/run"))
    parser.add_argument("--data", type=Path, default=Path("out/synth-heldout"))
    parser.add_argument("--compare", help="another LRP recipe (default: the default's rules, unstabilised)")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--save", type=Path, required=True)
    args = parser.parse_args()

    model, meta = load_run(args.run)
    default = spec_of_model(model).composite
    compare = args.compare or without_stabiliser(default)
    data = load_eval_images(args.data, meta.preprocessing, meta.classes, args.n)
    images = torch.from_numpy(data.images)
    maps = {}
    for recipe in (compare, default):
        with Explainer(model, "lrp", composite=recipe, classes=meta.classes) as explainer:
            # the same target for both: the class predicted on the clean image
            clean = explainer.explain(images)
            targets = [e.target for e in clean]
            noisy = explainer.explain(with_input_noise(images, 0), targets)  # explain-eval's floor, seed 0
        maps[recipe] = (np.stack([e.heatmap for e in clean]), np.stack([e.heatmap for e in noisy]), clean)
    floor = {r: metrics.spearman(np.abs(a), np.abs(b)) for r, (a, b, _) in maps.items()}
    i = int(np.argmin(floor[compare]))
    rgb = data.rgb[i]
    grid = stem_stride(model)
    label = meta.classes[maps[default][2][i].target]
    rows = []
    for recipe in (compare, default):
        clean_map, noisy_map, _ = maps[recipe]
        name = "default rules" if recipe == default else "compared"
        left = figure(rgb, clean_map[i], title=f"LRP, {name}: the photo", target_label=label, grid=grid,
                      notes=(recipe,))
        right = figure(rgb, noisy_map[i], title=f"the photo + noise in +-{SENSITIVITY_RADIUS}", target_label=label,
                       grid=grid, notes=(f"|map| Spearman with the left: {floor[recipe][i]:.2f} (mean over "
                                         f"{len(images)} images {floor[recipe].mean():.2f})",))
        rows.append(np.hstack([left, np.full((left.shape[0], 12, 3), 255, np.uint8), right]))
    args.save.parent.mkdir(parents=True, exist_ok=True)
    args.save.write_bytes(png_bytes(np.vstack(rows)))
    print(f"{args.save}: {data.paths[i]} (Spearman {floor[compare][i]:.2f} -> {floor[default][i]:.2f})")


if __name__ == "__main__":
    main()
