"""The `lesionlens revise` methods on one of the main job's models, measured the way issue 18
asks: frame styles painted on benign held-out photos (newly flagged, CI), the ring pasted on
training-set images of other classes, the melanoma relevance on the ring against the ring's share
of the image, and held-out ROC-AUC and sensitivity at the run's threshold.

    .venv/bin/python benchmarks/revise_methods.py [--out out] [--arch resnet50] [--methods unframe,augment,frame,pclarc,rrclarc]

`frame+edits` is the frame normalisation with augment's counterfactual edits as well
(`run_revise(..., edits=True)`): what the edits add to it.

Needs a finished main job in --out (its run, its audit, synth-train, synth-heldout). Writes each
revised run to OUT/ARCH/revise-METHOD/ (the main job's own revision, OUT/ARCH/revised/, and its
audit are reused for its method) and prints one table row per method (the parent first); the
revise time is the one revision.json recorded.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path


def _area(row: dict, before: bool) -> str:
    """The ring's share of the image as the model saw it, from the comparison row's subject
    ("covers 23% of the image", or "covers 23% of the image before, 2% after")."""
    found = re.search(r"covers (\d+%) of the image(?: before, (\d+%) after)?", row["subject"])
    if not found:
        return "?"
    return found.group(1) if before or not found.group(2) else found.group(2)


def _row(name: str, audit: dict, before: bool, metrics: dict, seconds: float) -> str:
    rows = audit["comparison"]["rows"]
    pick = "before" if before else "after"
    styles = {r["subject"].split()[0]: r[pick] for r in rows if r["kind"] == "frame_paste_style"}
    style_ci = {}
    if not before:
        for f in audit["findings"]:
            if f["kind"] == "frame_paste_style":
                ci = f["evidence"]["newly_flagged"]
                style_ci[f["evidence"]["style"]] = f"{100 * ci['mean']:.0f}% [{100 * ci['low']:.0f}, {100 * ci['high']:.0f}]"
    paste = next(r[pick] for r in rows if r["kind"] == "counterfactual_paste")
    relevance = next((r for r in rows if r["kind"] == "artifact_relevance" and r["subject"].startswith("melanoma")), None)
    auc = metrics.get("positive_roc_auc", metrics.get("roc_auc"))
    sens = metrics.get("sensitivity")
    worst = max(styles, key=styles.get)
    on_ring = "n/a" if relevance is None else f"{100 * relevance[pick]:.0f}% (of {_area(relevance, before)})"
    text = (f"| {name} | {100 * max(styles.values()):.0f}% ({worst}) | "
            + " / ".join(f"{100 * v:.0f}" for v in styles.values()) + "% | "
            + f"{paste:+.3f} | {on_ring} | {auc:.3f} | {sens if sens is None else f'{sens:.2f}'} | {seconds:.0f} s |")
    return text + (f"\n|   CIs (newly flagged) | {'; '.join(f'{k} {v}' for k, v in style_ci.items())} |" if style_ci else "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="out")
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--methods", default="unframe,augment,frame,pclarc,rrclarc")
    args = parser.parse_args()
    from lesionlens.audit import run_audit
    from lesionlens.revise import run_revise
    from lesionlens.training.evaluate import evaluate

    out, arch = Path(args.out), args.arch
    parent = out / arch / "run"
    lines = ["| model | worst style, newly flagged | circle / corners / bands / grey / soft | ring paste: mean change of P(melanoma) | melanoma relevance on the ring | held-out ROC-AUC | held-out sensitivity | revise time |",
             "|---|---|---|---|---|---|---|---|"]
    first = True
    for name in args.methods.split(","):
        method, edits = (name[:-len("+edits")], True) if name.endswith("+edits") else (name, False)
        target = out / arch / f"revise-{name}"
        main_job = out / arch / "revised"  # the main job's revision, with its default method
        if not (target / "model.json").is_file() and (main_job / "model.json").is_file() and \
                json.loads((main_job / "model.json").read_text())["revision"]["method"] == method and not edits:
            target = main_job
        started = time.perf_counter()
        if not (target / "model.json").is_file():
            run_revise(parent, out / "synth-train", target, method, edits=edits,
                       progress=lambda what: print(f"  {name}: {what}"))
            seconds = time.perf_counter() - started
        else:
            seconds = json.loads((target / "revision.json").read_text())["seconds"]
        earlier = target / "audit" / "audit.json"
        if earlier.is_file() and json.loads(earlier.read_text()).get("comparison"):
            audit = json.loads(earlier.read_text())
        else:
            audit = run_audit(out / "synth-train", target / "audit", run=target, heldout=out / "synth-heldout",
                              compare=parent, n=300, quiet=True)
        metrics = evaluate(target, out / "synth-heldout", progress=False)
        if first:
            parent_metrics = json.loads((out / arch / "heldout-metrics.json").read_text())
            lines.append(_row(f"{arch} (parent)", audit, True, parent_metrics, 0))
            first = False
        lines.append(_row(name, audit, False, metrics, seconds))
        print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
