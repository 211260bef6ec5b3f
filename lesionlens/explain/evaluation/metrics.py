"""Per-image scores of explanation maps (numpy in, numpy out), and the bootstrap CI.

Localisation comes from Quantus (`RelevanceMassAccuracy`, `RelevanceRankAccuracy`,
`PointingGame`, called on precomputed maps: their `evaluate_batch`), the rank correlation
from Quantus' `correlation_spearman`. The rest is small arithmetic that Quantus does not have
in this form: concept distinctness, layer share, sign agreement.

Maps are (B, H, W), signed (positive = evidence for the explained class).
"""

from __future__ import annotations

import numpy as np


def evidence(maps: np.ndarray, signed: bool = True) -> np.ndarray:
    """What localisation scores: the positive part of a signed map (Arras et al. 2022 score
    positive relevance), or |map| for maps whose sign means nothing (the plain gradient)."""
    return np.clip(maps, 0, None) if signed else np.abs(maps)


def _quantus():
    try:
        import quantus
    except ImportError:
        from ...errors import ExplainError

        raise ExplainError("explain-eval needs Quantus: pip install --no-deps quantus==0.6.0 "
                           "(scripts/setup.sh does; see pyproject.toml's [explain] extra)") from None
    return quantus


def mass_accuracy(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of the evidence inside the mask (Arras et al. 2022). NaN where the mask is empty or
    the map has no evidence at all."""
    quantus = _quantus()

    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(quantus.RelevanceMassAccuracy(disable_warnings=True)
                          .evaluate_batch(a_batch=maps.astype(np.float64), s_batch=masks), float)


def rank_accuracy(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of the mask's pixels among the top-|mask| pixels of the map (Arras et al. 2022)."""
    quantus = _quantus()

    return np.asarray(quantus.RelevanceRankAccuracy(disable_warnings=True)
                      .evaluate_batch(a_batch=maps.astype(np.float64), s_batch=masks), float)


def pointing_game(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """1 when the map's maximum lies inside the mask (Zhang et al. 2018)."""
    quantus = _quantus()

    hits = quantus.PointingGame(disable_warnings=True).evaluate_batch(a_batch=maps, s_batch=masks)
    return np.asarray(hits, float)


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image Spearman rank correlation of two batches of maps (B, H, W) -> (B,); a constant
    map correlates 0 with anything (it carries no ranking)."""
    _quantus()
    from quantus.functions.similarity_func import correlation_spearman

    out = []
    for x, y in zip(a.reshape(len(a), -1), b.reshape(len(b), -1)):
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            out.append(0.0)
        else:
            out.append(float(correlation_spearman(x, y)))
    return np.asarray(out)


def mean_abs_cosine(heatmaps: np.ndarray) -> float:
    """Distinctness of one image's concept heatmaps (k, H, W): the mean |cosine| over pairs.
    |.| because two maps that are negatives of each other show the same picture (the signed
    mean hides that: +1 and -1 average out)."""
    flat = heatmaps.reshape(len(heatmaps), -1).astype(np.float64)
    norms = np.linalg.norm(flat, axis=1)
    keep = norms > 0
    flat = flat[keep] / norms[keep, None]
    if len(flat) < 2:
        return float("nan")
    cos = np.abs(flat @ flat.T)
    return float(cos[~np.eye(len(flat), dtype=bool)].mean())


def sign_agrees(totals: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """1 where the heatmap's total has the sign of the explained logit."""
    return (np.sign(totals) == np.sign(logits)).astype(float)


def bootstrap_ci(values, *, seed: int = 0, resamples: int = 2000, level: float = 0.95) -> dict:
    """Mean and percentile-bootstrap CI of the finite values: {mean, low, high, n}."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(resamples, len(v)))].mean(1)
    alpha = (1 - level) / 2
    return {"mean": float(v.mean()), "low": float(np.quantile(means, alpha)),
            "high": float(np.quantile(means, 1 - alpha)), "n": int(len(v))}


def _harmonic_lines(h: int, w: int, period: int, shift: int = 0) -> np.ndarray:
    """bool (h, w) spectrum mask: the rows and columns at k h/period (k w/period) + shift, k >= 1."""
    rows = np.zeros(h, bool)
    rows[(np.arange(1, period) * (h // period) + shift) % h] = True
    cols = np.zeros(w, bool)
    cols[(np.arange(1, period) * (w // period) + shift) % w] = True
    return rows[:, None] | cols[None, :]


def blockiness(maps: np.ndarray, period: int) -> np.ndarray:
    """How much each map (B, H, W) is a grid at the network's stem stride `period` (px): the
    mean spectral power on the stride's harmonics (frequencies k H/period or k W/period, k >= 1)
    over the mean power on the frequencies one and two bins beside them. A grid of squares or
    dots laid at the stride (the flat first-layer rule under max-pooling, a stride-2 stem) puts
    peaks there; lesion structure, smooth or sharp, does not. Measured on made-up maps: white
    noise 1.0, a blurred map 0.9, a disc 1.2, 7x7 squares at 4-px positions 1.6, dots every
    2 px 5.0. NaN for a constant map or a period that does not divide the map."""
    b, h, w = maps.shape
    out = np.full(b, np.nan)
    if period < 2 or h % period or w % period or min(h, w) // period < 5:
        return out
    on = _harmonic_lines(h, w, period)
    beside = np.zeros_like(on)
    for shift in (-2, -1, 1, 2):
        beside |= _harmonic_lines(h, w, period, shift)
    beside &= ~on
    for i, m in enumerate(maps.astype(np.float64)):
        power = np.abs(np.fft.fft2(m - m.mean())) ** 2
        if power[beside].sum() > 0:
            out[i] = power[on].mean() / power[beside].mean()
    return out
