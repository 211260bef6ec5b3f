"""How many melanoma-feature kinds the model's own evidence reaches, against how many its top CRP
concepts name: the ceiling behind issue 19's goal "the top 4 concepts of a melanoma span >= 2
feature kinds".

    .venv/bin/python benchmarks/concept_kinds.py RUN [--data out/synth-heldout] [--n 200]

For each melanoma among the first N images of DATA (a generated set: it needs the feature
masks) that the model calls melanoma: the melanoma features (synth.MELANOMA_FEATURES) that hold
at least feature_names.MIN_SHARE of the LRP map's positive relevance (the share that names a
concept), and the kinds the 4 concepts a card shows first (the architecture's default layer and
concept choice) name at the same share. A concept decomposition cannot be expected to span kinds the map itself does not reach.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    from lesionlens.data.preprocess import decode_for, preprocess
    from lesionlens.data.readers import read_dataset
    from lesionlens.data.synth import MELANOMA_FEATURES
    from lesionlens.explain import Explainer
    from lesionlens.explain.feature_names import MIN_SHARE, region_masks, shares
    from lesionlens.training.rundir import load_run

    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", type=Path, default=Path("out/synth-heldout"))
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    model, meta = load_run(args.run)
    model.eval()
    spec, positive = meta.preprocessing, meta.positive_index
    dataset = read_dataset(args.data / "metadata.csv")
    rows = []
    with Explainer(model, "crp", classes=meta.classes, concepts=4) as explainer:
        for sample in dataset.samples[:args.n]:
            if dataset.classes[sample.label] != meta.classes[positive]:
                continue
            regions = region_masks(sample.path, spec) or {}
            features = {name: mask for name, mask in regions.items() if name in MELANOMA_FEATURES}
            if not features:
                continue
            x = torch.from_numpy(preprocess(decode_for(sample.path, spec), spec))
            explanation = explainer.explain(x[None], [positive])[0]
            if explanation.prediction["index"] != positive:
                continue
            on_map = shares(explanation.heatmap, features)
            named = set()
            for concept in explanation.concepts[:4]:
                found = shares(np.asarray(concept.heatmap), features)
                name, share = max(found.items(), key=lambda kv: kv[1], default=(None, 0.0))
                if share >= MIN_SHARE:
                    named.add(name)
            rows.append((len(features), sum(v >= MIN_SHARE for v in on_map.values()), len(named),
                         max(on_map.values(), default=0.0)))
    r = np.array(rows, float)
    if not len(r):
        raise SystemExit("no melanoma called melanoma with feature masks among the images")
    print(f"{args.run}: {len(r)} melanomas called melanoma, {r[:, 0].mean():.2f} melanoma features drawn per image")
    print(f"  kinds holding >= {MIN_SHARE:.0%} of the LRP map: mean {r[:, 1].mean():.2f}, "
          f">= 2 on {(r[:, 1] >= 2).mean():.0%} of them; the map's largest single-feature share {r[:, 3].mean():.2f}")
    print(f"  kinds the card's 4 concepts name (>= {MIN_SHARE:.0%}): mean {r[:, 2].mean():.2f}, "
          f">= 2 on {(r[:, 2] >= 2).mean():.0%}")


if __name__ == "__main__":
    main()
