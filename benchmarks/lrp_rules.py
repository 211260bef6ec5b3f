"""LRP's input-layer rule and max-pool handling, chosen for the picture: every candidate recipe and
the reference maps scored on the main job's held-out photos with explain-eval's own functions
(feature-level localisation on the generator's feature masks, blockiness, lesion mass, the total's
sign, and optionally the randomisation cascade), means with 95% bootstrap CIs.

    .venv/bin/python benchmarks/lrp_rules.py [--out out] [--arch resnet50] [--n 200] [--randomise]
        [--methods lrp,lrp:epsilon_shared+first=zbox,...]

Needs a finished main job in --out (OUT/ARCH/run and OUT/synth-heldout, generated with feature
masks). Prints one markdown row per method; docs/explanation-choice.md records the results.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

CANDIDATES = {
    "resnet50": ["lrp", "lrp:epsilon_shared+maxpool=proportional", "lrp:epsilon_shared+first=wsquare",
                 "lrp:epsilon_shared+first=wsquare+maxpool=proportional", "lrp:epsilon_shared+first=zbox",
                 "lrp:epsilon_shared+first=zbox+maxpool=proportional",
                 "lrp:epsilon_shared+first=epsilon+maxpool=proportional"],
    "efficientnet_b0_relu": ["lrp", "lrp:zplus_epsilon2_shared+first=wsquare", "lrp:zplus_epsilon2_shared+first=zbox",
                             "lrp:zplus_epsilon2_shared+first=epsilon"],
}
CANDIDATES["attention_resnet50"] = CANDIDATES["resnet50"]
REFERENCES = ["gradient", "input_x_gradient", "gradcam"]
COLUMNS = ("feature_share_melanoma_features", "feature_share_melanoma_features_displayed", "feature_share_skin",
           "feature_share_artifact", "blockiness", "blockiness_displayed",
           "mass_accuracy_lesion", "total_sign_agrees")


def _ci(c: dict, digits: int = 2) -> str:
    if not c or c.get("mean") is None:
        return "n/a"
    return f"{c['mean']:.{digits}f} [{c['low']:.{digits}f}, {c['high']:.{digits}f}]"


def main() -> None:
    import numpy as np
    import torch

    from lesionlens.explain.evaluation import metrics
    from lesionlens.explain.evaluation.data import load_eval_images
    from lesionlens.explain.evaluation.runner import evaluate_methods, parse_methods
    from lesionlens.training.models import spec_of_model
    from lesionlens.training.rundir import load_run

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out"))
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--randomise", action="store_true", help="also the randomisation cascade (slow)")
    parser.add_argument("--methods", default=None, help="comma-separated; default: the candidates + references")
    args = parser.parse_args()

    torch.manual_seed(0)
    model, meta = load_run(args.out / args.arch / "run")
    spec = spec_of_model(model)
    names = args.methods.split(",") if args.methods else CANDIDATES[args.arch] + REFERENCES
    names = [n for n in names if n.split(":")[0] in spec.methods or n in REFERENCES]
    images = load_eval_images(args.out / "synth-heldout", meta.preprocessing, meta.classes, args.n, seed=0)
    images.positive = meta.positive_index
    print(f"{args.arch}: {len(images.paths)} held-out images, {int((images.labels == images.positive).sum())} melanomas")
    head = ["method", *COLUMNS] + (["randomised: " + s for s in ("head", "top stage + head", "all")] if args.randomise
                                   else []) + ["seconds"]
    print("| " + " | ".join(head) + " |")
    print("|---" * len(head) + "|")
    for name in names:
        started = time.perf_counter()
        scores = evaluate_methods(model, images, parse_methods([name], spec, 0), sensitivity_n=0,
                                  randomise=args.randomise)[name]
        cells = [_ci(metrics.bootstrap_ci(scores.per_image.get(k, [np.nan]), seed=0)) for k in COLUMNS]
        if args.randomise:
            curve = [metrics.bootstrap_ci(r["abs"], seed=0) for r in scores.randomisation]
            cells += [_ci(curve[i]) if len(curve) > i else "" for i in (0, 1, len(curve) - 1)]
        print(f"| {name} | " + " | ".join(cells) + f" | {time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
