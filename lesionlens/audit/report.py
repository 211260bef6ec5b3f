"""audit.json and audit.md: what was found, how sure, what it means, for a clinician as much as
for an engineer. Figures are written beside them as PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from .._io import write_bytes, write_json, write_text
from ..escape import md_text


def _p(p: Optional[float]) -> str:
    return "-" if p is None else (f"{p:.1e}" if p < 1e-3 else f"{p:.3f}")


def _ci(ci: dict, pct: bool = False) -> str:
    if not ci or ci.get("mean") is None:
        return "-"
    f = (lambda v: f"{100 * v:.0f}%") if pct else (lambda v: f"{v:+.3f}")
    return f"{f(ci['mean'])} [{f(ci['low'])}, {f(ci['high'])}]"


def explain_finding(f: dict) -> str:
    """One plain sentence per finding."""
    e, kind = f["evidence"], f["kind"]
    if kind == "ring_label_association":
        shares = ", ".join(f"{c}: {100 * v['ring_share']:.0f}%" for c, v in e["per_class"].items()
                           if v["ring_share"] is not None)
        verdict = ("the ring goes with the label: a model can learn to call the ring instead of the lesion"
                   if f["flagged"] else "no association between the ring and the label")
        return (f"Microscope ring (dark field) on {e['ring_images']} of {e['images']} images ({shares}); "
                f"{verdict} (p = {_p(f['p_value'])}, Cramer's V {f['effect_size']:.2f}).")
    if kind == "metadata_association":
        verdict = "associated with the label" if f["flagged"] else "not associated with the label"
        return f"{f['subject'].capitalize()} is {verdict} (p = {_p(f['p_value'])}, Cramer's V {f['effect_size']:.2f})."
    if kind == "near_duplicates":
        return (f"{e['pairs']} near-duplicate pairs; {e['pairs_across_splits']} cross a split "
                f"(validation would score memory), {e['pairs_with_different_labels']} have different labels.")
    if kind == "class_balance":
        return "Class counts: " + ", ".join(f"{c} {n}" for c, n in e["counts"].items()) + "."
    if kind == "unreadable":
        images = e.get("images")
        if not isinstance(images, list):
            return f"{e.get('path')}: {e.get('reason')}"
        named = "; ".join(f"{i.get('path')} ({i.get('reason')})" for i in images[:5])
        more = f"; and {len(images) - 5} more (all in audit.json)" if len(images) > 5 else ""
        return f"{len(images)} image(s) failed to decode" + (f": {named}{more}." if images else ".")
    if kind == "unreadable_mask":
        return (f"{e.get('image')}: its mask {e.get('mask')} could not be read ({e.get('reason')}); "
                "the detected dark field stood in for it.")
    if kind == "artifact_relevance":
        parts = [f"{c}: {_ci(v['relevance_share'], True)} of its relevance on the artifact, which covers "
                 f"{100 * v['area_share']:.0f}% of those images" for c, v in e["per_class"].items()
                 if v["images_with_artifact"]]
        return "Where the model looks, on images with an artifact: " + ("; ".join(parts) or "no such images") + "."
    if kind == "spray_cluster":
        what = "mostly artifact images: a group decided on the same, possibly wrong, evidence" if f["flagged"] else "no concentration of the artifact"
        return (f"{e['class']} heatmaps, cluster of {e['size']}: {100 * e['artifact_share']:.0f}% artifact images "
                f"(class-wide {100 * e['class_artifact_share']:.0f}%), {what}.")
    if kind in ("counterfactual_paste", "counterfactual_remove"):
        action = "Pasting the artifact onto" if kind == "counterfactual_paste" else "Removing the artifact from"
        verdict = "the model reacts to the artifact itself" if f["flagged"] else "no material reaction"
        return (f"{action} {e['images']} images changes P({e['class']}) by "
                f"{_ci(e['probability_change'])} and flips {_ci(e['flipped_decisions'], True)} of the decisions: {verdict}.")
    if kind == "frame_paste_style":
        draws = e.get("draws_per_image", 1)  # audits before 2026-12-07 painted one frame per image
        return _painted_sentence(e, f"{e['style']} frame", f" ({draws} frames each)" if draws > 1 else "",
                                 "the model calls the frame, not the lesion" if f["flagged"] else "no material reaction")
    if kind == "lookalike_paste":
        # not "reads the darkening, not the lesion": dark skin and a gradient darken the lesion too
        return _painted_sentence(e, f"{e['style'].replace('_', ' ')} (not a frame: a control)",
                                 f" ({e['draws_per_image']} each)",
                                 "the model reacts to a darkening that is not a frame" if f["flagged"]
                                 else "no material reaction")
    if kind == "threshold_sensitivity":
        low, high = e["refit_threshold_sensitivity_95"]
        why = ("within what refitting the threshold on ~{} validation positives gives by chance".format(
            e["validation_positives"]) if e["within_threshold_noise"] else "outside the threshold's own noise")
        ring = e.get("validation_sensitivity_by_ring", {})
        split = (f" On validation it caught {_ci(ring['with_ring'], True)} of the {e['class']} images with a ring and "
                 f"{_ci(ring['without_ring'], True)} of those without." if ring.get("with_ring", {}).get("n") else "")
        return (f"At the run's threshold {e['threshold']:.3f} (chosen for {100 * e['target_sensitivity']:.0f}% "
                f"sensitivity on validation) the held-out sensitivity is {_ci(e['heldout_sensitivity'], True)}; "
                f"thresholds refitted on bootstrap resamples of the validation split give "
                f"{100 * low:.0f}-{100 * high:.0f}% there: {why}.{split}")
    return f["subject"]


def _painted_sentence(e: dict, what: str, each: str, verdict: str) -> str:
    """The paste test's sentence, for a frame style or a look-alike (paste_test.py)."""
    return (f"A {what} painted onto {e['images']} held-out images of other classes{each} newly makes "
            f"{_ci(e['newly_flagged'], True)} of them {e['class']} (flagged before: "
            f"{100 * e['flagged_before']:.0f}%, after: {100 * e['flagged_after']:.0f}%): {verdict}.")


def _png(path: Path, rgb: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if ok:
        write_bytes(path, encoded.tobytes())


def format_value(value, measure: str = "") -> str:
    """A finding's effect for a table: shares as percentages, probability changes signed."""
    if value is None:
        return "-"
    if measure.startswith("share") or "sensitivity" in measure:
        return f"{100 * value:.0f}%"
    return f"{value:+.3f}" if measure.startswith("mean change") else f"{value:.3f}"


def _comparison_lines(comparison: dict) -> list[str]:
    lines = ["", "## Before and after", "",
             f"This model ({md_text(comparison['after'])}) against the run it was revised from "
             f"({md_text(comparison['before'])}), on the same images and seed.", "",
             "| check | subject | before | after | flagged before | flagged after |", "|---|---|---|---|---|---|"]
    for row in comparison["rows"]:
        lines.append(f"| {md_text(row['kind'])} | {md_text(row['subject'])} | {format_value(row['before'], row['measure'])} | "
                     f"{format_value(row['after'], row['measure'])} | {'yes' if row['flagged_before'] else 'no'} | "
                     f"{'yes' if row['flagged_after'] else 'no'} |")
    return lines


def write_audit_report(out: Path, summary: dict, findings: list[dict], figures: dict) -> dict:
    """audit.json, audit.md and the figures, written into `out` (a fresh folder: the caller
    publishes it as one set). Every string from data is escaped in the Markdown."""
    out = Path(out)
    for f in findings:
        f["summary"] = explain_finding(f)
    for name, rgb in figures.items():
        _png(out / name, rgb)
    report = {**summary, "findings": findings, "figures": sorted(figures)}
    write_json(out / "audit.json", report)
    lines = ["# Shortcut audit", "", f"Data: {md_text(summary['data'])}" +
             (f"; model run: {md_text(summary['run'])}" if summary.get("run") else ""),
             "", "## What was found", ""]
    flagged = [f for f in findings if f["flagged"]]
    lines += [f"- **{md_text(f['summary'])}**" for f in flagged] or ["- Nothing was flagged."]
    lines += ["", "## Every check", "", "| check | subject | p | effect | flagged |", "|---|---|---|---|---|"]
    for f in findings:
        effect = "-" if f["effect_size"] is None else f"{f['effect_size']:.3f} ({md_text(f['effect_measure'])})"
        lines.append(f"| {md_text(f['kind'])} | {md_text(f['subject'])} | {_p(f['p_value'])} | {effect} | "
                     f"{'yes' if f['flagged'] else 'no'} |")
    if summary.get("comparison"):
        lines += _comparison_lines(summary["comparison"])
    lines += ["", "## In words", ""] + [f"- {md_text(f['summary'])}" for f in findings]
    if figures:  # figure names are ours (slugs and indices), never a class name
        lines += ["", "## Figures", ""] + [f"![{name}]({name})" for name in sorted(figures)]
    lines += ["", "## How to read this", "",
              "- p: the chance of an association at least this strong if there were none (Fisher's exact "
              "test for two-by-two tables, chi-square otherwise); flagged below "
              f"{summary['alpha']:g} divided by the number of tests, and only with Cramer's V >= {summary['min_effect']}.",
              "- Counterfactual changes are means with 95% bootstrap intervals; a change is flagged when the "
              f"interval excludes 0 and the mean moves the probability by at least {summary['min_shift']}.",
              "- SpRAy clusters are flagged when >= 80% of a cluster (of >= 5 images) carries the artifact, "
              "20 points above the class's own rate.",
              "- Time: " + ", ".join(f"{k} {v:.1f} s" for k, v in summary["timings"].items()) + "."]
    write_text(out / "audit.md", "\n".join(lines) + "\n")
    return report
