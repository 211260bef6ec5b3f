"""Which CRP concepts to show: the top k channels by relevance (CRP's usual choice, what the card
shows today) against a "spread" choice, measured on a run's melanomas (issue 19).

    .venv/bin/python benchmarks/concept_choice.py RUN [--data out/synth-heldout] [--n 200] [--pool 64]

Spread: greedy over the top --pool channels by |share| (spread+: only those with a positive
share, the evidence for the class); each next channel the one with the most
relevance where the chosen ones have none: |share| x (1 - the largest histogram intersection of
its positive relevance map at the concept layer with a chosen channel's). It needs nothing
beyond the pass CRP already makes (the layer's relevance), then one conditional heatmap per
chosen channel, as CRP computes them.

Per melanoma called melanoma among the first N images of DATA (a generated set: its feature
masks), for both choices: the top-8 concepts' mean |cosine| (explain-eval's concept_abs_cosine),
the top 4's purity (share of a concept's positive relevance on its best feature mask) and kinds
(how many different best masks), the share of the layer's |relevance| the 4 carry, and how
many of the 4 speak against the class (negative share: drawn blue).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

SHOWN, DISTINCT = 4, 8  # the card's concepts; the concepts explain-eval's |cosine| compares


def spread_channels(shares: torch.Tensor, layer_relevance: torch.Tensor, k: int, pool: int,
                    positive: bool = False) -> torch.Tensor:
    """k channels of one image: `shares` (C,), `layer_relevance` (C, h, w); `positive`: only
    channels that speak for the class (share > 0) are candidates."""
    candidates = [c for c in torch.argsort(shares.abs(), descending=True)[:pool].tolist()
                  if not positive or shares[c] > 0]
    maps = layer_relevance.clamp(min=0).flatten(1)
    maps = maps / (maps.sum(1, keepdim=True) + 1e-12)
    chosen: list[int] = []
    while len(chosen) < min(k, len(candidates)):
        def score(c: int) -> float:
            overlap = max((float(torch.minimum(maps[c], maps[s]).sum()) for s in chosen), default=0.0)
            return float(shares[c].abs()) * (1 - overlap)
        chosen.append(max((c for c in candidates if c not in chosen), key=score))
    return torch.tensor(chosen)


def main() -> None:
    from lesionlens.data.preprocess import decode_for, preprocess
    from lesionlens.data.readers import read_dataset
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
    parser.add_argument("--pool", type=int, default=64)
    args = parser.parse_args()
    model, meta = load_run(args.run)
    model.eval()
    spec, positive = meta.preprocessing, meta.positive_index
    layer_name = spec_of_model(model).default_concept_layer
    dataset = read_dataset(args.data / "metadata.csv")
    rows: dict[str, list] = {"top": [], "spread": [], "spread+": []}
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
                channels = (torch.argsort(channel_share.abs(), descending=True)[:DISTINCT] if choice == "top"
                            else spread_channels(channel_share, at_layer[0], DISTINCT, args.pool,
                                                 positive=choice == "spread+"))
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
        print(f"  {choice:6s} {len(r)} melanomas: top-{DISTINCT} |cos| {r[:, 0].mean():.2f}, top-{SHOWN} purity "
              f"{np.nanmean(r[:, 1]):.2f}, kinds {r[:, 2].mean():.2f} (>= 2 on {(r[:, 2] >= 2).mean():.0%}), "
              f"layer |relevance| carried by the {SHOWN}: {r[:, 3].mean():.2f}, against the class: {r[:, 4].mean():.0%}")


if __name__ == "__main__":
    main()
