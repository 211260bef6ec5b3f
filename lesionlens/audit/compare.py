"""`audit --run RUN2 --compare RUN`: the model checks of a revised run beside its parent's, on
the same images with the same seed, one row per check that measures the shortcut."""

from __future__ import annotations

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
