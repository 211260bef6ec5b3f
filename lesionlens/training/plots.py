"""PNG plots for a run: learning curves, ROC curves, confusion matrix (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .._io import atomic_write


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> None:
    """PNG through the atomic writer, like every other file of the run directory."""
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))


def plot_history(history: list[dict], out: Path) -> None:
    plt = _plt()
    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax1.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax1.set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    ax1.legend()
    ax2.plot(epochs, [h["val_roc_auc"] if h["val_roc_auc"] is not None else np.nan for h in history])
    ax2.set(xlabel="epoch", ylabel="ROC-AUC", title="Validation ROC-AUC", ylim=(0.4, 1.01))
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)


def plot_roc(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str], out: Path) -> None:
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    shown = [1] if len(classes) == 2 else range(len(classes))
    for k in shown:
        positive = y_true == k
        if 0 < positive.sum() < len(positive):
            fpr, tpr, _ = roc_curve(positive, probs[:, k])
            ax.plot(fpr, tpr, label=f"{classes[k]} (AUC {roc_auc_score(positive, probs[:, k]):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (validation)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)


def plot_confusion(matrix: list[list[int]], classes: Sequence[str], out: Path) -> None:
    plt = _plt()
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 3, 1.2 * len(classes) + 2.5))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(m[i, j]), ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (validation)")
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)
