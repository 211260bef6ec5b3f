"""Which CRP concepts to show: the top k channels by relevance (CRP's usual choice) against the
"distinct" choice (explain/concept_choice.py), measured on a run's melanomas (issue 19).

    .venv/bin/python benchmarks/concept_choice.py RUN [--data out/synth-heldout] [--n 200]

Distinct: evidence for the class only (share > 0), greedy over the top 64 channels by |share|,
each next channel the one with the most relevance where the chosen ones have none: share x (1 -
the largest histogram intersection of its positive relevance map at the concept layer with a
chosen channel's). It needs nothing beyond the pass CRP already makes (the layer's relevance),
then one conditional heatmap per chosen channel, as CRP computes them. (Measured before it was
built into the product as "spread+", beside a "spread" that let counter-evidence in:
docs/explanation-choice.md.)

Per melanoma called melanoma among the first N images of DATA (a generated set: its feature
masks), for both choices: the 8 concepts' mean |cosine| (explain-eval's concept_abs_cosine),
the first 4's purity (share of a concept's positive relevance on its best feature mask) and kinds
(how many different best masks), the share of the layer's |relevance| the 4 carry, and how
many of the 4 speak against the class (negative share: drawn blue).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

SHOWN, DISTINCT = 4, 8  # the card's concepts; the concepts explain-eval's |cosine| compares


def main() -> None:
    from lesionlens.data.preprocess import decode_for, preprocess
    from lesionlens.data.readers import read_dataset
    from lesionlens.explain.concept_choice import CHOICES, choose_channels
    from lesionlens.explain.evaluation.metrics import mean_abs_cosine
    from lesionlens.explain.fast_crp import channel_shares, conditional_heatmaps, layer_relevance
    from lesionlens.explain.fast_lrp import fast_lrp
    from lesionlens.explain.feature_names import region_masks, shares
    from lesionlens.training.models import spec_of_model
    from lesionlens.training.rundir import load_run

    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", type=Path, default=Path("out/synth-heldout"))
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    model, meta = load_run(args.run)
    model.eval()
    spec, positive = meta.preprocessing, meta.positive_index
    layer_name = spec_of_model(model).default_concept_layer
    dataset = read_dataset(args.data / "metadata.csv")
    rows: dict[str, list] = {choice: [] for choice in CHOICES}
    with fast_lrp(model) as prepared:
        layer = prepared.get_submodule(layer_name)
        for sample in dataset.samples[:args.n]:
            if dataset.classes[sample.label] != meta.classes[positive]:
                continue
            regions = region_masks(sample.path, spec)
            if regions is None:
                continue
            regions = {name: mask for name, mask in regions.items() if name not in ("lesion_rest", "skin")}
            image = torch.from_numpy(preprocess(decode_for(sample.path, spec), spec))[None]
            target = torch.tensor([positive])
            logits, at_layer, _, _ = layer_relevance(prepared, image, target, layer)
            if int(logits.argmax(1)) != positive:
                continue
            channel_share = channel_shares(at_layer)[0]
            for choice in rows:
                channels = choose_channels(channel_share, at_layer[0], DISTINCT, choice)
                heatmaps = conditional_heatmaps(prepared, layer, image, at_layer[0], channels).detach().numpy()
                best = [max(found.items(), key=lambda kv: kv[1])
                        for found in (shares(h, regions) for h in heatmaps[:SHOWN]) if found]
                rows[choice].append((mean_abs_cosine(heatmaps), np.mean([s for _, s in best]) if best else np.nan,
                                     len({name for name, _ in best}), float(channel_share[channels[:SHOWN]].abs().sum()),
                                     float((channel_share[channels[:SHOWN]] < 0).float().mean())))
    print(f"{args.run} (concepts at {layer_name}):")
    for choice, found in rows.items():
        r = np.array(found, float)
        if not len(r):
            raise SystemExit("no melanoma called melanoma with feature masks among the images")
        print(f"  {choice:8s} {len(r)} melanomas: {DISTINCT} concepts |cos| {r[:, 0].mean():.2f}, first {SHOWN}: purity "
              f"{np.nanmean(r[:, 1]):.2f}, kinds {r[:, 2].mean():.2f} (>= 2 on {(r[:, 2] >= 2).mean():.0%}), "
              f"layer |relevance| carried by the {SHOWN}: {r[:, 3].mean():.2f}, against the class: {r[:, 4].mean():.0%}")


if __name__ == "__main__":
    main()
