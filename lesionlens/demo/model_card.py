"""The demo's "model card" tab, read from the run directory: what the model is, what it was
trained on, how well it did against the majority baseline, the threshold and the sensitivity it
was chosen for, the shortcut audit's findings and the explanation-evaluation table (when those
reports are in the run directory: RUN/audit/, RUN/explain_eval/). File names only: no server
path reaches the page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional


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
    metrics = run_dir.read_metrics().get("val", {})
    data = meta.data or {}
    target = (meta.config or {}).get("target_sensitivity")
    lines = [f"## {meta.arch}", "",
             f"- Classes: {', '.join(meta.classes)}" + (f"; positive (flagged) class: **{meta.positive_class}**"
                                                       if meta.positive_class else ""),
             f"- Input: {meta.preprocessing.size} px, {meta.preprocessing.interpolation} resize",
             f"- Trained on {data.get('images_used', '?')} images ({Path(str(data.get('source', '?'))).name}), "
             f"split by {data.get('grouped_by', 'patient')}; per split: " +
             "; ".join(f"{split} " + ", ".join(f"{c} {n}" for c, n in counts.items())
                       for split, counts in (data.get("class_counts_by_split") or {}).items()),
             ""]
    if meta.decision_threshold is not None:
        lines += [f"**Decision threshold**: {meta.decision_threshold:.4f} on P({meta.positive_class}), chosen on "
                  f"validation for {_fmt(target)} sensitivity.", ""]
    baseline = metrics.get("majority_baseline", {})
    lines += ["### Validation", "", "| metric | model | majority baseline |", "|---|---|---|"]
    for key in ("roc_auc", "balanced_accuracy", "accuracy"):
        lines.append(f"| {key.replace('_', ' ')} | {_fmt(metrics.get(key))} | {_fmt(baseline.get(key))} |")
    for key in ("sensitivity", "specificity"):
        if key in metrics:
            lines.append(f"| {key} at the threshold | {_fmt(metrics.get(key))} | - |")
    lines += ["", f"({metrics.get('n', '?')} validation images.)", ""]
    findings = audit_findings(run)
    lines += ["### Shortcut audit", ""]
    if findings is None:
        lines += ["No audit in this run directory (`lesionlens audit --data DATA --run RUN --out RUN/audit`).", ""]
    else:
        flagged = [f for f in findings if f.get("flagged")]
        lines += [f"- **{f['summary']}**" for f in flagged] or ["- Nothing flagged."]
        lines.append("")
    lines += ["### Explanation evaluation", ""]
    lines += _explain_eval_table(Path(run) / "explain_eval" / "explain_eval.json")
    return "\n".join(lines)


def _explain_eval_table(path: Path) -> list[str]:
    if not path.is_file():
        return ["No explanation evaluation in this run directory (`lesionlens explain-eval RUN --data DATA`)."]
    try:
        report = json.loads(path.read_text())
    except ValueError:
        return ["The explanation evaluation report could not be read."]
    methods = report.get("methods", {})
    wanted = ("mass_accuracy_lesion", "randomisation_top", "concept_abs_cosine", "total_sign_agrees")
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
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows + ["", f"({report.get('n', '?')} images, 95% bootstrap intervals; randomisation_top: Spearman "
                       "of |map| after the top stage and head are re-initialised, lower is better.)"]
