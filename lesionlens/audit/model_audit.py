"""The model half of `lesionlens audit --run RUN`: does the trained model use the artifact?

On up to `n` images of the data (preprocessed as the run's model sees them):
- artifact relevance share: the fraction of positive LRP relevance (the architecture's default
  rules, each image explained for its own class) inside the artifact region, per class, beside
  the region's share of the image (what an artifact-blind map would put there);
- SpRAy: per class, spectral clusters of the heatmaps; each cluster's size and its share of
  artifact images (purity), with a montage of members (spray.py);
- counterfactuals: the artifact pasted onto images of the other classes that have none, and
  removed from the images that have it (counterfactual.py); the mean change of the artifact
  class's probability and the share of flipped decisions, with bootstrap CIs;
- frame styles: with a held-out set, every dermatoscope frame style painted onto its images of
  the other classes, and the share newly called the artifact class (paste_test.py);
- threshold: with a held-out set, the sensitivity the run's threshold gives there, beside the
  spread of sensitivities that thresholds refitted on bootstrap resamples of the run's own
  validation split would give (is a drop the threshold's noise, or something else?).

Artifact regions: the generator's artifact masks where the CSV names them; otherwise (real
data) the detected dark field of dark_field.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..explain.evaluation.metrics import bootstrap_ci
from . import counterfactual, spray
from ..names import class_slug
from ..data.dark_field import detect_dark_field
from ..data.preprocess import finish_sized, normalize
from .paste_test import frame_paste_findings

MIN_SHIFT = 0.05  # mean probability change below this is not called a shortcut, however sure
BOOTSTRAP = 2000


@dataclass
class ModelAudit:
    findings: list[dict] = field(default_factory=list)
    figures: dict = field(default_factory=dict)  # name -> (H, W, 3) uint8
    timings: dict = field(default_factory=dict)
    artifact_source: str = ""


def _probabilities(model, images: np.ndarray, spec, batch: int = 32) -> np.ndarray:
    from ..data.preprocess import normalize

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.stack([normalize(r, spec) for r in images[i:i + batch]]))
            out.append(torch.softmax(model(x), 1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def _decisions(probs: np.ndarray, index: int, threshold: Optional[float]) -> np.ndarray:
    """True where the model calls the artifact class: its threshold on that class's probability
    when the run has one for it, else argmax."""
    if threshold is not None:
        return probs[:, index] >= threshold
    return probs.argmax(1) == index


def _regions(data) -> tuple[np.ndarray, str]:
    if data.artifact_masks is not None:
        regions = data.artifact_masks.copy()
        unknown = np.nonzero(~data.masks_known)[0]
        for i in unknown:  # a mask that could not be read: the detector stands in for it
            regions[i] = detect_dark_field(data.rgb[i]).region(*data.rgb[i].shape[:2])
        extra = f"; the detected dark field for {len(unknown)} image(s) whose mask could not be read" if len(unknown) else ""
        return regions, "the dataset's artifact masks" + extra
    regions = np.stack([detect_dark_field(rgb).region(*rgb.shape[:2]) for rgb in data.rgb])
    return regions, "the detected dark field (no artifact masks in the data)"


def _relevance_share(maps: np.ndarray, regions: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    positive = np.clip(maps, 0, None)
    total = positive.reshape(len(maps), -1).sum(1)
    inside = (positive * regions).reshape(len(maps), -1).sum(1)
    has = regions.reshape(len(regions), -1).any(1)
    area = regions.reshape(len(regions), -1).mean(1)
    per_class = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, inside / total, np.nan)
    for k, name in enumerate(classes):
        chosen = has & (labels == k)
        per_class[name] = {"images_with_artifact": int(chosen.sum()),
                           "relevance_share": bootstrap_ci(share[chosen]),
                           "area_share": float(area[chosen].mean()) if chosen.any() else None}
    return per_class


def _spray(maps, labels, regions, classes, rgb, seed, grid: int = None) -> tuple[list[dict], dict]:
    from ..explain.render import display_map, overlay

    has = regions.reshape(len(regions), -1).any(1)
    findings, figures = [], {}
    for k, name in enumerate(classes):
        idx = np.nonzero(labels == k)[0]
        if len(idx) < 8:
            continue
        result = spray.cluster(maps[idx], seed)
        base_rate = float(has[idx].mean())
        for c in np.unique(result.labels):
            members = idx[result.labels == c]
            purity = float(has[members].mean())
            flagged = bool(len(members) >= 5 and purity >= 0.8 and purity > base_rate + 0.2)
            figure = f"spray_{class_slug(k, name)}_{int(c)}.png"  # never the raw name: it is data
            # drawn like every figure (smoothed over the input grid); clustered on the raw maps
            tiles = [np.concatenate([rgb[i], overlay(rgb[i], display_map(maps[i], grid))], 0) for i in members[:8]]
            figures[figure] = np.concatenate(tiles, 1)
            findings.append({"kind": "spray_cluster", "subject": f"{name} heatmaps, cluster {int(c)}",
                             "p_value": None, "effect_size": purity, "effect_measure": "share of artifact images",
                             "evidence": {"class": name, "size": int(len(members)), "class_images": int(len(idx)),
                                          "artifact_share": purity, "class_artifact_share": base_rate,
                                          "eigenvalues": [round(float(e), 4) for e in result.eigenvalues],
                                          "members": [str(i) for i in members[:20].tolist()], "figure": figure},
                             "flagged": flagged})
    return findings, figures


def _shift_finding(kind: str, subject: str, before: np.ndarray, after: np.ndarray, index: int,
                   threshold: Optional[float], class_name: str, seed: int) -> dict:
    change = after[:, index] - before[:, index]
    flipped = _decisions(before, index, threshold) != _decisions(after, index, threshold)
    ci = bootstrap_ci(change, seed=seed, resamples=BOOTSTRAP)
    flips = bootstrap_ci(flipped.astype(float), seed=seed, resamples=BOOTSTRAP)
    sure = ci["n"] > 1 and (ci["low"] > 0 or ci["high"] < 0)
    return {"kind": kind, "subject": subject, "p_value": None, "effect_size": ci["mean"],
            "effect_measure": f"mean change of P({class_name})",
            "evidence": {"images": int(len(change)), "class": class_name, "probability_change": ci, "flipped_decisions": flips,
                         "decision": f"P({class_name}) >= {threshold:.4f}" if threshold is not None else "argmax"},
            "flagged": bool(sure and abs(ci["mean"]) >= MIN_SHIFT)}


def _as_seen(photos, spec):
    """`photos` (EvalImages) as the model sees them: unchanged unless the run removes frames."""
    if not spec.unframe:
        return photos
    rgb = np.stack([finish_sized(r, spec) for r in photos.rgb])
    return replace(photos, rgb=rgb, images=np.stack([normalize(r, spec) for r in rgb]))


def _counterfactuals(model, spec, data, seen, regions, index, threshold, classes, seed) -> tuple[list[dict], dict]:
    """The artifact pasted onto / removed from `data`'s photos as taken; the model sees each photo
    after the run's pixel steps: `seen` (the same photos so, _as_seen) before the edit,
    finish_sized after it."""
    rgb, labels = data.rgb, data.labels
    has = regions.reshape(len(regions), -1).any(1)
    rng = np.random.default_rng(seed)
    findings, figures = [], {}
    name = classes[index]
    donors = np.nonzero(has)[0]
    recipients = np.nonzero(~has & (labels != index))[0]
    if len(donors) and len(recipients):
        chosen = rng.choice(donors, size=len(recipients))
        # the run's own pixel steps after the edit (frame removal, the normalised frame), as a photo
        # taken with the pasted artifact would get them
        pasted = np.stack([finish_sized(counterfactual.paste(rgb[r], rgb[d], regions[d]), spec)
                           for r, d in zip(recipients, chosen)])
        before, after = _probabilities(model, seen[recipients], spec), _probabilities(model, pasted, spec)
        findings.append(_shift_finding("counterfactual_paste", f"artifact pasted onto images of other classes than {name}",
                                       before, after, index, threshold, name, seed))
        figures["counterfactual_paste.png"] = np.concatenate(
            [np.concatenate([rgb[r], p], 0) for r, p in zip(recipients[:6], pasted[:6])], 1)
    if len(donors):
        removed = np.stack([finish_sized(counterfactual.remove(rgb[d], regions[d]), spec) for d in donors])
        before, after = _probabilities(model, seen[donors], spec), _probabilities(model, removed, spec)
        finding = _shift_finding("counterfactual_remove", "artifact removed from the images that have it",
                                 before, after, index, threshold, name, seed)
        # removing a shortcut *for* the class lowers its probability: flag a drop, as a paste flags a rise
        findings.append(finding)
        figures["counterfactual_remove.png"] = np.concatenate(
            [np.concatenate([rgb[d], r], 0) for d, r in zip(donors[:6], removed[:6])], 1)
    return findings, figures


def _threshold_finding(model, meta, run: Path, heldout: Path, seed: int) -> dict:
    """Held-out sensitivity at the run's threshold vs the spread that refitting the threshold on
    bootstrap resamples of the validation split gives on the same held-out images."""
    from ..data.preprocess import decode_for, resize_to_spec
    from ..explain.evaluation.data import load_eval_images
    from ..training.metrics import threshold_for_sensitivity
    from ..training.rundir import RunDir

    index, spec = meta.positive_index, meta.preprocessing
    target = float(meta.config.get("target_sensitivity", 0.9)) if isinstance(meta.config, dict) else 0.9
    val = RunDir(run).read_splits(meta.classes, ["val"])
    # the photos as taken (the ring is detected on them), then as the model sees them
    val_photos = np.stack([resize_to_spec(decode_for(s.path, spec), replace(spec, unframe=False)) for s in val])
    val_rgb = np.stack([finish_sized(r, spec) for r in val_photos])
    val_labels = np.asarray([s.label for s in val])
    val_probs = _probabilities(model, val_rgb, spec)[:, index]
    held = load_eval_images(heldout, spec, meta.classes, n=10 ** 9, seed=seed)  # all of it
    held_probs = _probabilities(model, held.rgb, spec)[:, index]
    held_pos = held_probs[held.labels == index]
    observed = float((held_pos >= meta.decision_threshold).mean()) if len(held_pos) else None
    rng = np.random.default_rng(seed)
    refit = []
    for _ in range(BOOTSTRAP // 2):
        pick = rng.integers(0, len(val_probs), len(val_probs))
        t = threshold_for_sensitivity(val_labels[pick] == index, val_probs[pick], target)
        refit.append(float((held_pos >= t).mean()))
    low, high = (float(np.quantile(refit, 0.025)), float(np.quantile(refit, 0.975))) if refit else (None, None)
    observed_ci = bootstrap_ci((held_pos >= meta.decision_threshold).astype(float), seed=seed, resamples=BOOTSTRAP)
    inside = observed is not None and low is not None and low <= observed <= high
    # the validation positives with and without a detected ring: if the ring-free ones are caught
    # less often, the validation sensitivity the threshold was fitted to leaned on the ring
    val_ring = np.asarray([detect_dark_field(rgb).is_ring for rgb in val_photos])
    val_pos = val_labels == index
    caught = (val_probs >= meta.decision_threshold).astype(float)
    by_ring = {name: bootstrap_ci(caught[val_pos & (val_ring == flag)], seed=seed, resamples=BOOTSTRAP)
               for name, flag in (("with_ring", True), ("without_ring", False))}
    return {"kind": "threshold_sensitivity", "subject": f"sensitivity at the run's threshold on {heldout}",
            "p_value": None, "effect_size": observed, "effect_measure": "held-out sensitivity",
            "evidence": {"class": meta.classes[index], "threshold": meta.decision_threshold, "target_sensitivity": target,
                         "validation_positives": int((val_labels == index).sum()),
                         "heldout_positives": int(len(held_pos)), "heldout_sensitivity": observed_ci,
                         "refit_threshold_sensitivity_95": [low, high],
                         "validation_sensitivity_by_ring": by_ring,
                         "within_threshold_noise": bool(inside)},
            "flagged": bool(observed is not None and observed < target and not inside)}


def audit_model(run: Path, data: Path, *, n: int = 600, seed: int = 0, image_root: Optional[Path] = None,
                heldout: Optional[Path] = None, progress: Optional[Callable[[str], None]] = None) -> ModelAudit:
    from ..explain.evaluation.data import load_eval_images
    from ..explain.explainer import Explainer
    from ..training.rundir import load_run

    step = progress or (lambda what: None)
    timings: dict = {}
    start = time.perf_counter()
    model, meta = load_run(Path(run), "cpu")
    model.eval()
    spec = meta.preprocessing
    # the photos as taken, at the model's size: the artifact's regions are found on them and the
    # counterfactuals edit them; the model is shown each after the run's own pixel steps
    # (finish_sized), so a run that removes frames (spec.unframe) is audited as it is deployed
    photos = load_eval_images(Path(data), replace(spec, unframe=False), meta.classes, n, seed, image_root)
    regions, source = _regions(photos)
    data_images = _as_seen(photos, spec)
    index = meta.positive_index if meta.positive_index is not None else len(meta.classes) - 1
    timings["load"] = time.perf_counter() - start
    audit = ModelAudit(timings=timings, artifact_source=source)

    step("heatmaps")
    start = time.perf_counter()
    images, labels = torch.from_numpy(data_images.images), torch.from_numpy(data_images.labels)
    with Explainer(model, "lrp") as explainer:
        maps = torch.cat([explainer.compute(images[i:i + 32], labels[i:i + 32]).heatmaps
                          for i in range(0, len(images), 32)]).numpy()
    timings["heatmaps (LRP)"] = time.perf_counter() - start

    start = time.perf_counter()
    audit.findings.append({"kind": "artifact_relevance", "subject": "relevance inside the artifact region",
                           "p_value": None, "effect_size": None, "effect_measure": "share of positive relevance",
                           "evidence": {"per_class": _relevance_share(maps, regions, data_images.labels, meta.classes),
                                        "regions": source},
                           "flagged": False})
    step("SpRAy")
    findings, figures = _spray(maps, data_images.labels, regions, meta.classes, data_images.rgb, seed,
                               explainer.input_grid)
    audit.findings += findings
    audit.figures.update(figures)
    timings["SpRAy"] = time.perf_counter() - start

    step("counterfactuals")
    start = time.perf_counter()
    threshold = meta.decision_threshold if meta.positive_index is not None else None
    findings, figures = _counterfactuals(model, spec, photos, data_images.rgb, regions, index, threshold,
                                         meta.classes, seed)
    audit.findings += findings
    audit.figures.update(figures)
    timings["counterfactuals"] = time.perf_counter() - start
    if heldout is not None and meta.positive_index is not None and meta.decision_threshold is not None:
        step("threshold")
        start = time.perf_counter()
        audit.findings.append(_threshold_finding(model, meta, Path(run), Path(heldout), seed))
        timings["threshold bootstrap"] = time.perf_counter() - start
        step("frame styles pasted on held-out images")
        start = time.perf_counter()
        findings, figures = frame_paste_findings(
            lambda images: _probabilities(model, np.stack(images), spec),
            lambda probs: _decisions(probs, index, threshold), spec, Path(heldout), meta.classes, index, seed=seed)
        audit.findings += findings
        audit.figures.update(figures)
        timings["frame paste by style, and look-alikes"] = time.perf_counter() - start
    for skipped in data_images.skipped:
        audit.findings.append({"kind": "unreadable", "subject": f"skipped {skipped['path']}", "p_value": None,
                               "effect_size": 1.0, "effect_measure": "images",
                               "evidence": skipped, "flagged": True})
    for problem in data_images.mask_problems:
        audit.findings.append({"kind": "unreadable_mask", "subject": f"mask of {problem['image']}", "p_value": None,
                               "effect_size": 1.0, "effect_measure": "masks", "evidence": problem, "flagged": True})
    return audit
