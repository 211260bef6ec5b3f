"""The demo's "model card" tab, read from the run directory: what the model is, what it was
trained on, how well it did against the majority baseline, the threshold and the sensitivity it
was chosen for, the shortcut audit's findings and the explanation-evaluation table (when those
reports are in the run directory: RUN/audit/, RUN/explain_eval/). File names only: no server
path reaches the page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from ..errors import RunError
from ..escape import md_text


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def audit_findings(run: Path) -> Optional[list[dict]]:
    path = Path(run) / "audit" / "audit.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())["findings"]
    except (ValueError, KeyError, OSError):
        return None


def ring_finding(run: Path) -> Optional[dict]:
    """The audit's ring-association and counterfactual findings for this run, if audited."""
    findings = audit_findings(run) or []
    wanted = {f["kind"]: f for f in findings if f["kind"] in ("ring_label_association", "counterfactual_paste")}
    return wanted or None


def model_card_markdown(run: Path) -> str:
    from ..training.rundir import RunDir

    run_dir = RunDir(Path(run))
    meta = run_dir.read_metadata()
    try:
        metrics = run_dir.read_metrics().get("val", {})
    except RunError:  # a run without metrics.json (made by hand, or a random one) still has a card
        metrics = {}
    data = meta.data or {}
    target = (meta.config or {}).get("target_sensitivity")
    # every string from the run directory is data (class names, the data folder's name): escaped
    lines = [f"## {md_text(meta.arch)}", "",
             f"- Classes: {', '.join(md_text(c) for c in meta.classes)}" +
             (f"; positive (flagged) class: **{md_text(meta.positive_class)}**" if meta.positive_class else ""),
             f"- Input: {meta.preprocessing.size} px, {md_text(meta.preprocessing.interpolation)} resize",
             f"- Trained on {md_text(data.get('images_used', '?'))} images "
             f"({md_text(Path(str(data.get('source', '?'))).name)}), "
             f"split by {md_text(data.get('grouped_by', 'patient'))}; per split: " +
             "; ".join(f"{md_text(split)} " + ", ".join(f"{md_text(c)} {md_text(n)}" for c, n in counts.items())
                       for split, counts in (data.get("class_counts_by_split") or {}).items()),
             ""]
    if meta.decision_threshold is not None:
        lines += [f"**Decision threshold**: {meta.decision_threshold:.4f} on P({md_text(meta.positive_class)}), "
                  f"chosen on validation for {md_text(_fmt(target))} sensitivity.", ""]
    baseline = metrics.get("majority_baseline", {})
    lines += ["### Validation", "", "| metric | model | majority baseline |", "|---|---|---|"]
    for key in ("roc_auc", "balanced_accuracy", "accuracy"):
        lines.append(f"| {key.replace('_', ' ')} | {md_text(_fmt(metrics.get(key)))} | "
                     f"{md_text(_fmt(baseline.get(key)))} |")
    for key in ("sensitivity", "specificity"):
        if key in metrics:
            lines.append(f"| {key} at the threshold | {md_text(_fmt(metrics.get(key)))} | - |")
    lines += ["", f"({md_text(metrics.get('n', '?'))} validation images.)", ""]
    findings = audit_findings(run)
    lines += ["### Shortcut audit", ""]
    if findings is None:
        lines += ["No audit in this run directory (`lesionlens audit --data DATA --run RUN --out RUN/audit`).", ""]
    else:
        flagged = [f for f in findings if f.get("flagged")]
        lines += [f"- **{md_text(f['summary'])}**" for f in flagged] or ["- Nothing flagged."]
        lines.append("")
    lines += ["### Explanation evaluation", ""]
    lines += explain_eval_table(Path(run) / "explain_eval" / "explain_eval.json")
    return "\n".join(lines)


def explain_eval_table(path: Path) -> list[str]:
    if not path.is_file():
        return ["No explanation evaluation in this run directory (`lesionlens explain-eval RUN --data DATA`)."]
    try:
        report = json.loads(path.read_text())
    except ValueError:
        return ["The explanation evaluation report could not be read."]
    methods = report.get("methods", {})
    wanted = ("mass_accuracy_lesion", "randomisation_top", "noise_floor", "concept_abs_cosine", "total_sign_agrees")
    rows = ["| method | " + " | ".join(wanted) + " |", "|---" * (len(wanted) + 1) + "|"]
    for name, scores in methods.items():
        cells = []
        for metric in wanted:
            if metric == "randomisation_top":  # cascade step 2: the head and the top stage re-initialised
                steps = scores.get("randomisation") or []
                ci = steps[1]["abs"] if len(steps) > 1 else None
            else:
                ci = scores.get("metrics", {}).get(metric)
            cells.append("-" if not ci or ci.get("mean") is None else
                         f"{ci['mean']:.2f} [{ci['low']:.2f}, {ci['high']:.2f}]")
        rows.append(f"| {md_text(name)} | " + " | ".join(cells) + " |")
    return rows + ["", f"({md_text(report.get('n', '?'))} images, 95% bootstrap intervals; randomisation_top: Spearman "
                       "of |map| after the top stage and head are re-initialised, lower is better, but only below "
                       "noise_floor (the same for the image plus imperceptible noise, the model unchanged): a map "
                       "no lower than its floor shows noise, not the model.)"]
