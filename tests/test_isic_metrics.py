"""Our ISIC metrics against the official scorer (isic-challenge-scoring's metric functions,
called directly: its CSV loader still uses pandas' removed DataFrame.applymap)."""

import numpy as np
import pandas as pd
import pytest

from lesionlens.training.isic_metrics import isic_scores

official = pytest.importorskip("isic_challenge_scoring.metrics", reason="dev dependency isic-challenge-scoring")


def _frames(y, probs, classes):
    truth = pd.DataFrame(np.eye(len(classes))[y], columns=classes)
    return truth, pd.DataFrame(probs, columns=classes), pd.Series(np.ones(len(y)))


@pytest.mark.parametrize("k,seed", [(2, 0), (3, 1), (4, 2), (2, 3)])
def test_isic_scores_equal_the_official_scorer(k, seed):
    rng = np.random.default_rng(seed)
    classes = [f"c{i}" for i in range(k)]
    y = rng.integers(k, size=300)
    logits = rng.normal(size=(300, k)) + 1.5 * np.eye(k)[y]  # informative, not perfect
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    probs = np.round(probs, 3)  # rounding makes tied scores and tied argmaxes ("undecided") happen
    ours = isic_scores(y, probs, classes, positive_index=k - 1)
    truth, pred, weights = _frames(y, probs, classes)
    assert ours["balanced_multiclass_accuracy"] == pytest.approx(
        official.balanced_multiclass_accuracy(truth, pred, weights), abs=1e-12)
    for name in classes:
        t, p = truth[name], pred[name]
        assert ours["per_class"][name]["auc"] == pytest.approx(official.auc(t, p, weights), abs=1e-12)
        assert ours["per_class"][name]["ap"] == pytest.approx(official.average_precision(t, p, weights), abs=1e-12)
        assert ours["per_class"][name]["auc_sens_80"] == pytest.approx(
            official.auc_above_sensitivity(t, p, weights, 0.8), abs=1e-12)
    assert ours["partial_auc_above_80_sensitivity"] == ours["per_class"][classes[-1]]["auc_sens_80"]


def test_undecided_ties_count_as_wrong_and_scale_is_right():
    y = np.array([0, 0, 1, 1])
    tied = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    assert isic_scores(y, tied, ["a", "b"])["balanced_multiclass_accuracy"] == pytest.approx(0.5)
    perfect = isic_scores(y, np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]]), ["a", "b"], 1)
    assert perfect["partial_auc_above_80_sensitivity"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    yr = rng.integers(2, size=20000)
    random = isic_scores(yr, np.stack([1 - (p := rng.random(20000)), p], 1), ["a", "b"], 1)
    assert random["partial_auc_above_80_sensitivity"] == pytest.approx(0.18, abs=0.01)
