"""`audit --run RUN2 --compare RUN`: the model checks of a revised run beside its parent's, on
the same images with the same seed, one row per check that measures the shortcut."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

COMPARED = ("counterfactual_paste", "counterfactual_remove", "frame_paste_style", "lookalike_paste",
            "threshold_sensitivity")


def _rows(findings: list[dict]) -> dict:
    """{(kind, subject or class): (value, measure, flagged, the artifact's area share or None)}."""
    out = {}
    for f in findings:
        if f["kind"] == "artifact_relevance":
            for name, v in f["evidence"]["per_class"].items():
                if v["images_with_artifact"]:
                    # keyed by class alone: the region is the artifact as each model sees it, so
                    # its area differs under a revision's frame normalisation (the normalised
                    # frame covers most of the ring), and the subject says both areas
                    out[("artifact_relevance", name)] = (v["relevance_share"]["mean"], "share of positive relevance",
                                                         False, v["area_share"])
        elif f["kind"] in COMPARED:
            out[(f["kind"], f["subject"])] = (f["effect_size"], f["effect_measure"], f["flagged"], None)
    return out


def _subject(key: tuple, area_before: Optional[float], area_after: Optional[float]) -> str:
    if key[0] != "artifact_relevance":
        return key[1]
    if area_before is not None and area_after is not None and round(100 * area_before) != round(100 * area_after):
        return (f"{key[1]}: relevance on the artifact (it covers {100 * area_before:.0f}% of the image before, "
                f"{100 * area_after:.0f}% after: the part the revised model's preprocessing leaves visible)")
    return f"{key[1]}: relevance on the artifact (it covers {100 * area_after:.0f}% of the image)"


def compare_findings(before: list[dict], after: list[dict], before_run: str, after_run: str) -> dict:
    old, new = _rows(before), _rows(after)
    rows = []
    for key in [k for k in new if k in old]:
        (b, measure, fb, area_b), (a, _, fa, area_a) = old[key], new[key]
        rows.append({"kind": key[0], "subject": _subject(key, area_b, area_a), "measure": measure, "before": b,
                     "after": a, "flagged_before": fb, "flagged_after": fa})
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
