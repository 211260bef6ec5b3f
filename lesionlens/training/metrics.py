"""Classification metrics for N classes, with a decision threshold for the positive class.

Missing a melanoma costs more than a false alarm, so the threshold on the positive class's
probability is chosen on validation data for a target sensitivity, not left at argmax.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score, roc_curve


def roc_auc(y_true: np.ndarray, probs: np.ndarray) -> Optional[float]:
    """Binary: AUC of class 1's probability. N classes: macro one-vs-rest over the classes
    present (a class absent from this split has no AUC). None if only one class is present."""
    present = np.unique(y_true)
    if len(present) < 2:
        return None
    if probs.shape[1] == 2:
        return float(roc_auc_score(y_true == 1, probs[:, 1]))
    aucs = [roc_auc_score(y_true == k, probs[:, k]) for k in present]
    return float(np.mean(aucs))


def threshold_for_sensitivity(is_positive: np.ndarray, positive_prob: np.ndarray, target: float) -> float:
    """The largest threshold whose sensitivity reaches `target` (so specificity is as high as
    it can be at that sensitivity). A case is positive when its probability >= threshold.

    The threshold lies midway between the score that reaches the target and the next lower
    score, not on the score itself: the same model run elsewhere (ONNX, another batch size, a
    GPU) computes that case's probability a few ulps lower, and a threshold on the score would
    then drop it and change the recorded sensitivity. Both sensitivity and specificity are the
    same anywhere in that gap."""
    if not is_positive.any():
        return 0.5
    fpr, tpr, thresholds = roc_curve(is_positive, positive_prob)
    reach = np.nonzero(tpr >= target)[0]
    k = int(reach[0]) if len(reach) else len(thresholds) - 1
    upper = float(min(1.0, thresholds[k]))
    lower = float(thresholds[k + 1]) if k + 1 < len(thresholds) else 0.0
    return (upper + lower) / 2


def classification_metrics(
    y_true: Sequence[int],
    probs: np.ndarray,
    classes: Sequence[str],
    positive_index: Optional[int] = None,
    threshold: Optional[float] = None,
) -> dict:
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    pred = probs.argmax(1)
    counts = np.bincount(y_true, minlength=len(classes))
    majority = int(counts.argmax())
    out = {
        "n": int(len(y_true)),
        "class_counts": {c: int(n) for c, n in zip(classes, counts)},
        "accuracy": float((pred == y_true).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, pred)),
        "roc_auc": roc_auc(y_true, probs),
        "confusion_matrix": confusion_matrix(y_true, pred, labels=list(range(len(classes)))).tolist(),
        "majority_baseline": {
            "class": classes[majority],
            "accuracy": float(counts[majority] / max(1, counts.sum())),
            "balanced_accuracy": float(1 / max(1, np.count_nonzero(counts))),
            "roc_auc": 0.5,
        },
    }
    if positive_index is not None:
        is_pos = y_true == positive_index
        p_pos = probs[:, positive_index]
        out["positive_class"] = classes[positive_index]
        out["positive_roc_auc"] = float(roc_auc_score(is_pos, p_pos)) if 0 < is_pos.sum() < len(is_pos) else None
        if threshold is not None:
            flagged = p_pos >= threshold
            tp, fn = int((flagged & is_pos).sum()), int((~flagged & is_pos).sum())
            tn, fp = int((~flagged & ~is_pos).sum()), int((flagged & ~is_pos).sum())
            out["threshold"] = float(threshold)
            out["sensitivity"] = tp / (tp + fn) if tp + fn else None
            out["specificity"] = tn / (tn + fp) if tn + fp else None
            out["flagged_fraction"] = float(flagged.mean())
    return out
