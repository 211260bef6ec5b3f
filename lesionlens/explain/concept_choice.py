"""Which channels of the concept layer a CRP explanation shows (issue 19).

- "top": the k channels with the largest |share| of the layer's relevance, CRP's usual choice.
  On these models the top channels of a melanoma mostly light the same spot: four near-copies
  of one map (docs/explanation-choice.md, "CRP concepts").
- "distinct": evidence for the explained class only (share > 0), among the POOL channels with
  the largest |share|; the first is the strongest, and each next one the channel with the most
  relevance where the chosen ones have none: share x (1 - the largest histogram intersection of
  its positive relevance map at the concept layer with a chosen channel's). Where fewer than k
  channels qualify, the rest follow by |share|. It needs nothing beyond the relevance CRP
  computes anyway: no extra pass.

Both return the channels in the order a card shows them. Torch-free at import (the CLI's parser
lists CHOICES).
"""

from __future__ import annotations

CHOICES = ("top", "distinct")
DESCRIPTIONS = {  # for a reader of the card (the demo's note)
    "top": "the channels with the largest share of the layer's relevance",
    "distinct": "evidence for the class, the strongest first, each next one where the ones before have none",
}
POOL = 64  # candidates for "distinct": the channels with the largest |share|


def check_choice(choice: str) -> str:
    if choice not in CHOICES:
        from ..errors import ExplainError  # torch-free

        raise ExplainError(f"unknown concept choice {choice!r}; use one of {list(CHOICES)}")
    return choice


def choose_channels(shares: torch.Tensor, layer_relevance: torch.Tensor, k: int, choice: str) -> torch.Tensor:
    """(k,) channel indices of one image: `shares` (C,) each channel's signed share (or
    relevance) of the layer, `layer_relevance` (C, h, w) the relevance at the layer."""
    import torch

    by_size = torch.argsort(shares.abs(), descending=True)
    if check_choice(choice) == "top":
        return by_size[:k]
    pool = by_size[:max(POOL, k)]
    candidates = pool[shares[pool] > 0]
    maps = layer_relevance[candidates].clamp(min=0).flatten(1).double()
    maps = maps / (maps.sum(1, keepdim=True) + 1e-12)  # each a histogram over the layer's grid
    weight = shares[candidates].double()
    covered = torch.zeros_like(weight)  # each candidate's largest overlap with a chosen one
    taken = torch.zeros(len(candidates), dtype=torch.bool, device=weight.device)
    chosen: list[int] = []
    for _ in range(min(k, len(candidates))):
        score = (weight * (1 - covered)).masked_fill(taken, -1.0)  # scores of the untaken are >= 0
        best = int(score.argmax())
        taken[best] = True
        chosen.append(int(candidates[best]))
        covered = torch.maximum(covered, torch.minimum(maps, maps[best]).sum(1))
    picked = set(chosen)
    rest = [c for c in by_size.tolist() if c not in picked][:k - len(chosen)]
    return torch.tensor(chosen + rest, dtype=torch.long, device=shares.device)


def choose_batch(shares: torch.Tensor, layer_relevance: torch.Tensor, k: int, choice: str) -> torch.Tensor:
    """(B, k): choose_channels per image of `shares` (B, C) and `layer_relevance` (B, C, h, w)."""
    import torch

    if check_choice(choice) == "top":
        return torch.argsort(shares.abs(), dim=1, descending=True)[:, :k]
    return torch.stack([choose_channels(s, r, k, choice) for s, r in zip(shares, layer_relevance)])
