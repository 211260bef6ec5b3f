"""The ISIC challenge's classification metrics, computed as its official scorer
(`isic-challenge-scoring`, metrics.py) computes them, without its pandas dependency.

- balanced multiclass accuracy: the mean per-class recall of the argmax decision; an image
  whose highest probability is shared by two classes counts as "undecided" (wrong), as there;
- per class, one-vs-rest: ROC AUC, average precision, and the area under the ROC curve where
  sensitivity >= 80% (`auc_sens_80`: the partial AUC used to rank melanoma detection, not
  McClish-normalised: 1.0 for a perfect ranking, 0.18 for a random one).

tests/test_isic_metrics.py scores the same predictions with the official package.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from sklearn.metrics import auc, average_precision_score, confusion_matrix, roc_auc_score, roc_curve

PARTIAL_AUC_SENSITIVITY = 0.8


def _labels_with_ties(probs: np.ndarray) -> np.ndarray:
    """argmax, or -1 where the maximum is not unique (the official scorer's "undecided")."""
    top = probs.max(1, keepdims=True)
    labels = probs.argmax(1)
    labels[(probs == top).sum(1) > 1] = -1
    return labels


def balanced_multiclass_accuracy(y_true: np.ndarray, probs: np.ndarray) -> float:
    k = probs.shape[1]
    predicted = _labels_with_ties(probs)
    matrix = confusion_matrix(y_true, predicted, labels=list(range(k)))  # "undecided" falls outside
    per_class = np.bincount(y_true, minlength=k)
    # classes absent from y_true divide by zero there and are dropped by pandas' mean: nanmean here
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.nanmean(matrix.diagonal() / per_class))


def auc_above_sensitivity(is_positive: np.ndarray, score: np.ndarray,
                          sensitivity: float = PARTIAL_AUC_SENSITIVITY) -> float:
    """Area under the ROC curve over the stretch where sensitivity >= `sensitivity`, with the
    curve's point at exactly that sensitivity interpolated (the official algorithm). The area
    runs from that point's FPR to 1 under the whole curve: a perfect ranking scores 1.0, a
    random one (1 - s^2) / 2 = 0.18 for s = 0.8."""
    fpr, tpr, _ = roc_curve(is_positive, score, drop_intermediate=False)
    i = int(tpr.searchsorted(sensitivity, side="left"))
    fpr_at = np.interp(sensitivity, tpr[i - 1:i + 1], fpr[i - 1:i + 1])
    return float(auc(np.insert(fpr[i:], 0, fpr_at), np.insert(tpr[i:], 0, sensitivity)))


def isic_scores(y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str],
                positive_index: Optional[int] = None) -> dict:
    """{"balanced_multiclass_accuracy", "per_class": {class: {auc, ap, auc_sens_80}}, and for a
    positive (melanoma) class "partial_auc_above_80_sensitivity"}; a class with no positive or
    no negative image gets None for its curve metrics."""
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    out: dict = {"balanced_multiclass_accuracy": balanced_multiclass_accuracy(y_true, probs), "per_class": {}}
    for k, name in enumerate(classes):
        is_k = y_true == k
        if 0 < is_k.sum() < len(is_k):
            out["per_class"][name] = {"auc": float(roc_auc_score(is_k, probs[:, k])),
                                      "ap": float(average_precision_score(is_k, probs[:, k])),
                                      "auc_sens_80": auc_above_sensitivity(is_k, probs[:, k])}
        else:
            out["per_class"][name] = {"auc": None, "ap": None, "auc_sens_80": None}
    if positive_index is not None:
        out["partial_auc_above_80_sensitivity"] = out["per_class"][classes[positive_index]]["auc_sens_80"]
    return out
