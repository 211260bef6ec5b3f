"""`audit --run RUN2 --compare RUN`: the model checks of a revised run beside its parent's, on
the same images with the same seed, one row per check that measures the shortcut."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

COMPARED = ("counterfactual_paste", "counterfactual_remove", "frame_paste_style", "threshold_sensitivity")


def _rows(findings: list[dict]) -> dict:
    out = {}
    for f in findings:
        if f["kind"] == "artifact_relevance":
            for name, v in f["evidence"]["per_class"].items():
                if v["images_with_artifact"]:
                    subject = f"{name}: relevance on the artifact (it covers {100 * v['area_share']:.0f}% of the image)"
                    out[("artifact_relevance", subject)] = (v["relevance_share"]["mean"], "share of positive relevance",
                                                            False)
        elif f["kind"] in COMPARED:
            out[(f["kind"], f["subject"])] = (f["effect_size"], f["effect_measure"], f["flagged"])
    return out


def compare_findings(before: list[dict], after: list[dict], before_run: str, after_run: str) -> dict:
    old, new = _rows(before), _rows(after)
    rows = []
    for key in [k for k in new if k in old]:
        (b, measure, fb), (a, _, fa) = old[key], new[key]
        rows.append({"kind": key[0], "subject": key[1], "measure": measure, "before": b, "after": a,
                     "flagged_before": fb, "flagged_after": fa})
    return {"before": before_run, "after": after_run, "rows": rows}


def earlier_findings(parent: Path, key: dict) -> Optional[list[dict]]:
    """The parent's findings from its own audit (PARENT/audit/audit.json) when that audit used
    the same data, held-out set, image count and seed, and the parent's current weights: running
    the same checks again would give the same numbers. None otherwise."""
    from .._io import read_json
    from ..errors import LesionlensError
    from ..training.rundir import RunDir

    path = Path(parent) / "audit" / "audit.json"
    try:
        report = read_json(path)
        weights = RunDir(parent).read_metadata().weights_sha256
    except (LesionlensError, OSError, ValueError):
        return None
    if not isinstance(report, dict) or report.get("weights_sha256") != weights:
        return None
    if any(report.get(k) != v for k, v in key.items()):
        return None
    return report.get("findings") if isinstance(report.get("findings"), list) else None
