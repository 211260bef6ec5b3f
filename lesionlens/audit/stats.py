"""Association between a categorical property of the images (ring yes/no, a metadata column)
and the label: the contingency table, Fisher's exact test for 2x2 tables (chi-square
otherwise), and Cramer's V as the effect size. scipy does the tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

ALPHA = 1e-3  # significance per test, before the Bonferroni correction over the tests of one audit
MIN_EFFECT = 0.1  # Cramer's V: below this an association is too weak to act on, however sure
RARE = 5  # values seen fewer times than this are pooled into "(other)" before testing


@dataclass
class Association:
    values: list[str]  # the property's values (table rows)
    classes: list[str]  # table columns
    table: np.ndarray  # (values, classes) counts
    test: str  # "fisher" or "chi2"
    p_value: float
    cramers_v: float

    def flagged(self, tests: int = 1) -> bool:
        return self.p_value < ALPHA / max(1, tests) and self.cramers_v >= MIN_EFFECT

    def to_dict(self) -> dict:
        return {"values": self.values, "classes": self.classes, "table": self.table.tolist(), "test": self.test,
                "p_value": self.p_value, "cramers_v": round(self.cramers_v, 4)}


def pool_rare(values: Sequence[str], rare: int = RARE) -> list[str]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return [v if counts[v] >= rare else "(other)" for v in values]


def associate(values: Sequence[str], labels: Sequence[int], classes: Sequence[str]) -> Association:
    """Test whether `values` (one per image) and `labels` (class indices) are independent."""
    from scipy.stats import chi2_contingency, fisher_exact

    kinds = sorted(set(values))
    present = sorted(set(int(label) for label in labels))
    table = np.zeros((len(kinds), len(present)), np.int64)
    row, column = {v: i for i, v in enumerate(kinds)}, {c: j for j, c in enumerate(present)}
    for v, label in zip(values, labels):
        table[row[v], column[int(label)]] += 1
    names = [classes[c] for c in present]
    if min(table.shape) < 2:  # one value or one class: nothing can be associated
        return Association(kinds, names, table, "none", 1.0, 0.0)
    chi2 = float(chi2_contingency(table, correction=False).statistic)
    v = float(np.sqrt(chi2 / (table.sum() * (min(table.shape) - 1))))
    if table.shape == (2, 2):
        return Association(kinds, names, table, "fisher", float(fisher_exact(table).pvalue), v)
    return Association(kinds, names, table, "chi2", float(chi2_contingency(table).pvalue), v)
