"""`lesionlens audit`: does the data, or the model, carry a shortcut (the microscope ring and
its kin)? dataset_audit.py needs no model; model_audit.py uses the run's explanations and
counterfactual images; report.py writes audit.json and audit.md."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

from .._fileset import FileSet
from .stats import ALPHA, MIN_EFFECT


def run_audit(data: Path, out: Path, *, run: Optional[Path] = None, heldout: Optional[Path] = None,
              n: int = 600, seed: int = 0, image_root: Optional[Path] = None, quiet: bool = False,
              compare: Optional[Path] = None) -> dict:
    from .dataset_audit import audit_dataset
    from .model_audit import MIN_SHIFT, audit_model
    from .paste_test import DRAWS_PER_IMAGE, LOOKALIKES
    from .report import write_audit_report

    started = time.perf_counter()
    splits = None
    if run is not None:
        from ..training.rundir import RunDir

        run_dir = RunDir(Path(run))
        meta = run_dir.read_metadata()
        splits = {str(Path(s.path).resolve()): s.split for s in run_dir.read_splits(meta.classes)}
    dataset = audit_dataset(Path(data), image_root, splits, progress=not quiet)
    findings, figures, timings = list(dataset.findings), {}, dict(dataset.timings)
    rings = [r.dark_field.to_dict() for r in dataset.readable]
    artifact_source, comparison = None, None
    if run is not None:
        say = (lambda what: None) if quiet else (lambda what: print(f"audit: {what}", file=sys.stderr))
        model = audit_model(Path(run), Path(data), n=n, seed=seed, image_root=image_root, heldout=heldout,
                            progress=say)
        findings += model.findings
        figures.update(model.figures)
        timings.update(model.timings)
        artifact_source = model.artifact_source
        if compare is not None:  # the parent, on the same images with the same seed
            from .compare import compare_findings, earlier_findings

            # frame_draws: an audit that painted another number of frames per photo measured
            # the frame-paste test differently (audits before it had none: one frame);
            # lookalike_controls: audits before them lack those rows
            key = {"data": str(data), "heldout": str(heldout) if heldout else None, "n": n, "seed": seed,
                   "frame_draws": DRAWS_PER_IMAGE, "lookalike_controls": list(LOOKALIKES)}
            before = earlier_findings(Path(compare), key)
            if before is None:
                say(f"the same checks on {compare}")
                before = audit_model(Path(compare), Path(data), n=n, seed=seed, image_root=image_root,
                                     heldout=heldout, progress=say).findings
            else:
                say(f"the checks on {compare}: from its own audit with the same data, images and seed")
            comparison = compare_findings(before, model.findings, str(compare), str(run))
    timings["total"] = time.perf_counter() - started
    weights = None
    if run is not None:
        weights = meta.weights_sha256
    summary = {"data": str(data), "run": str(run) if run else None, "heldout": str(heldout) if heldout else None,
               "classes": dataset.classes, "images": len(dataset.records), "readable": len(dataset.readable),
               "ring_images": sum(r["is_ring"] for r in rings), "artifact_regions": artifact_source,
               "n": n, "frame_draws": DRAWS_PER_IMAGE if run is not None else None,
               "lookalike_controls": list(LOOKALIKES) if run is not None else None, "weights_sha256": weights,
               "comparison": comparison, "alpha": ALPHA, "min_effect": MIN_EFFECT, "min_shift": MIN_SHIFT, "seed": seed,
               "images_per_second": len(dataset.records) / max(1e-9, dataset.timings["decode + detector + hash"]),
               "timings": {k: round(v, 2) for k, v in timings.items()},
               "per_image": [{"path": str(r.path), "label": dataset.classes[r.label], "split": r.split,
                              **({"dark_field": r.dark_field.to_dict()} if r.dark_field else {"error": r.error})}
                             for r in dataset.records]}
    # audit.json, audit.md and the figures change as one set: the demo and the report read them
    # by name, so a killed audit must not leave a figure beside a report it does not belong to
    with FileSet(out, members=_audit_file).staging() as stage:
        report = write_audit_report(stage.path, summary, findings, figures)
        stage.publish()
    return report


def _audit_file(name: str) -> bool:
    figures = ("spray_", "counterfactual_", "frame_paste", "lookalike_paste")
    return name in ("audit.json", "audit.md") or (name.endswith(".png") and name.startswith(figures))
