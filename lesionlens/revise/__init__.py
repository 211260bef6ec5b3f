"""`lesionlens revise RUN --data DATA --out RUN2 --method METHOD --artifact ring|COLUMN=VALUE`:
remove a shortcut the audit found, as a product feature with a deployable result.

Methods (measured against each other in benchmarks/RESULTS.md):
- `augment`: counterfactual augmentation. Fine-tune on the parent's training split with the
  artifact pasted onto images and removed from those that carry it, in shares balanced per
  class (finetune.py says how), so it no longer tells the classes apart;
- `frame`: frame normalisation. Every image gets the same dark frame (PreprocessSpec.frame) at
  training and at inference, recorded in the spec so the ONNX runtime applies it too; fine-tune
  (with `augment`'s edits as well, for the frames' parts left inside the normalised field, it
  measured the same, benchmarks/RESULTS.md; `edits=True` runs that variant);
- `unframe`: frame removal. A frame the dark-field detector finds is filled with the photo's
  skin (PreprocessSpec.unframe) at training and at inference, recorded in the spec so the ONNX
  runtime applies it too; photos without one are left whole. Fine-tuned with `augment`'s edits,
  so fills (and the frames the detector misses) appear on every class alike;
- `pclarc`: P-ClArC. The artifact's concept activation vector at a layer, projected out by a
  fixed module after that layer; no training;
- `rrclarc`: RR-ClArC. Fine-tune with a penalty on the output's gradient along that vector.

RUN2 is an ordinary run directory (it exports, explains, serves); model.json's `revision` names
the parent (path and weights sha256), the method, the artifact and the layer; revision.json holds
the fine-tuning history and the vector's statistics.

The threshold is chosen again on the parent's validation split at the parent's target
sensitivity, on its photos with the artifact removed (the carriers' region filled with skin, as
the augmentation does). The split's melanomas carry the shortcut the revision took away, so
their scores as they are say what the parent's world looked like, not the held-out one: a
threshold set on them left the revised EfficientNet at 100% validation sensitivity and 85% on
ring-free held-out photos (84.6% -> 91.3% with the threshold set this way, ResNet50
91.9% -> 92.6%). ROC-AUC and accuracy are still recorded on the split as it is.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import UsageError, display_path
from ..training.rundir import REVISION_METHODS

METHODS = REVISION_METHODS  # model.json accepts exactly these
# The defaults, as benchmarks/RESULTS.md measured. For the ring, frame removal: on the same
# ResNet50 parent it left 2 / 0 / 2 / 2 / 11% of benign held-out photos newly flagged with a
# circle / corners / bands / grey / soft frame painted on, against augmentation's 26 / 4 / 11 /
# 22 / 37%, at the same held-out AUC (0.909 vs 0.912; parent 0.851); with the soft frame's rim
# evened out as well (2026-12-07; each style painted 3 times per photo), 2 / 1 / 1 / 2 / 6%
# (attention-ResNet50 at most 4.6%, EfficientNet at most 1%); with a fine-tune of 8 epochs
# instead of 6 and carriers shown without their frame as inference removes it, the soft frame
# 1.8-3.5% over three seeds; with a quarter of the fine-tune's frames left visible (finetune.py
# VISIBLE_SHARE), the main job 2.4 / 5.7 / 1.1% and letterbox bars <= 2.2%; with 10 epochs, see
# FINETUNE_EPOCHS. Frame normalisation removed frames as well but blacks out 45% of every photo
# and cost 0.04-0.05 AUC on two architectures.
# For any other artifact (a ruler, a colour patch), augmentation: it needs only a region.
DEFAULT_METHOD = "augment"
DEFAULT_RING_METHOD = "unframe"


def default_method(artifact: str) -> str:
    """The measured default for `artifact` (`ring` or COLUMN=VALUE)."""
    return DEFAULT_RING_METHOD if artifact == "ring" else DEFAULT_METHOD


# 10: on the main job's ResNet50, over three fine-tune seeds, the soft frame newly flagged
# 4.0-6.1% of benign photos after 6 epochs, 1.8-3.5% after 8, 2.4-2.9% after 10 (held-out AUC
# 0.888-0.917, 0.935-0.954, 0.961-0.978); attention-ResNet50, with VISIBLE_SHARE, 2.9-4.9%
# after 8 (its main job 5.7%), 1.4-3.8% after 10 (AUC 0.917-0.941, 0.949-0.963). Each epoch
# costs the main job about 11 s per ResNet (revise 135 -> 156 s, 134 -> 159 s; benchmarks/RESULTS.md).
FINETUNE_EPOCHS = 10
FINETUNE_LR_FACTOR = 0.3  # of the parent's learning rate: adjust, do not retrain
DEFAULT_FRAME = 0.42  # frame normalisation's field radius (of the side): inside every generator style's field
RR_STRENGTH = 10.0
MIN_THRESHOLD_POSITIVES = 20  # fewer positives left after the removal: the threshold is set on the split as it is


def _artifact_class(carries: np.ndarray, labels: np.ndarray, classes: list[str]) -> int:
    """The class the artifact favours: the highest share of carriers."""
    shares = [carries[labels == k].mean() if (labels == k).any() else 0.0 for k in range(len(classes))]
    return int(np.argmax(shares))


def _preprocessed(samples, spec, artifact=None):
    """The samples as model input, and the indices of those kept. With `artifact` (an ArtifactSet
    over `samples`) its region is filled with skin on every carrier before preprocessing (which
    then applies the spec's frame, if any); a carrier with no region to remove is left out."""
    import torch

    from ..audit import counterfactual
    from ..data.preprocess import decode_for, preprocess
    from .finetune import region_to_move

    images, kept = [], []
    for i, sample in enumerate(samples):
        rgb = decode_for(sample.path, spec)
        if artifact is not None and artifact.carries[i]:
            region = region_to_move(artifact, i, rgb)
            if region is None:
                continue
            rgb = counterfactual.remove(rgb, region)
        images.append(preprocess(rgb, spec))
        kept.append(i)
    return torch.from_numpy(np.stack(images)), kept


def _probabilities(model, x) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        return torch.cat([torch.softmax(model(x[i:i + 64]), 1) for i in range(0, len(x), 64)]).numpy()


def _validation(model, samples, spec, positive: Optional[int], target: float, artifact=None) -> dict:
    """Accuracy and ROC-AUC on the split as it is; the threshold on it with `artifact` removed
    (see the module's note), unless too few positives remain."""
    from ..training.metrics import roc_auc, threshold_for_sensitivity

    labels = np.array([s.label for s in samples])
    probs = _probabilities(model, _preprocessed(samples, spec)[0])
    out = {"val_accuracy": float((probs.argmax(1) == labels).mean()), "threshold": None}
    if positive is None:
        return out
    out["val_roc_auc"] = roc_auc(labels, probs)
    basis, scores, truth = "the validation split as it is", probs[:, positive], labels == positive
    if artifact is not None and artifact.carries.any():
        x, kept = _preprocessed(samples, spec, artifact)
        if (labels[kept] == positive).sum() >= MIN_THRESHOLD_POSITIVES:
            basis = f"the validation split with {artifact.name} removed from its {int(artifact.carries.sum())} carriers"
            scores, truth = _probabilities(model, x)[:, positive], labels[kept] == positive
    out["threshold"] = float(threshold_for_sensitivity(truth, scores, target))
    out["threshold_basis"] = basis
    return out


def run_revise(run: Path, data: Path, out: Path, method: Optional[str] = None, artifact: str = "ring",
               layer: Optional[str] = None,
               epochs: int = FINETUNE_EPOCHS, lr_factor: float = FINETUNE_LR_FACTOR, frame: float = DEFAULT_FRAME,
               seed: int = 0, edits: bool = False,
               progress: Optional[Callable[[str], None]] = None) -> Path:
    """Revise `run` into `out` (see the module's note); `method` None: default_method(artifact).
    `edits=True` (frame only) adds the counterfactual edits to the normalisation: the variant
    benchmarks/revise_methods.py measures as `frame+edits`."""
    import torch

    from .._io import sha256_file, write_json
    from ..training.architectures import get_spec
    from ..training.rundir import RunDir, load_run, save_run
    from .artifacts import find_artifact
    from .finetune import RevisionDataset, finetune
    from .methods import RightReasonLoss, concept_vector, pooled_activations

    say = progress or (lambda what: None)
    method = method or default_method(artifact)
    if method not in METHODS:
        raise UsageError(f"--method must be one of {METHODS}, got {method!r}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{display_path(out)} exists and is not empty; choose another --out")
    parent = RunDir(run)
    started = time.perf_counter()
    model, meta = load_run(parent)
    if meta.revision:
        raise UsageError(f"{display_path(parent.path)} is itself revised ({meta.revision['method']}); revise its "
                         "parent instead, with the artifacts the audit of the parent found")
    arch = get_spec(meta.arch)
    layer = layer or arch.gradcam_layer
    try:
        model.get_submodule(layer)
    except AttributeError:
        raise UsageError(f"--layer {layer!r} is not a module of {meta.arch}") from None
    train = parent.read_splits(meta.classes, ["train"])
    val = parent.read_splits(meta.classes, ["val"])
    labels = np.array([s.label for s in train])
    found = find_artifact(Path(data), train, artifact)
    if found.carries.all() or not found.carries.any():
        raise UsageError(f"--artifact {artifact}: {int(found.carries.sum())} of {len(train)} training images carry "
                         "it; revising needs some with and some without")
    target_class = _artifact_class(found.carries, labels, meta.classes)
    config = meta.config if isinstance(meta.config, dict) else {}
    base_lr = float(config.get("lr") or arch.recipe.lr)
    batch = int(config.get("batch_size") or arch.recipe.batch_size)
    spec = meta.preprocessing
    record: dict = {"method": method, "artifact": artifact, "artifact_class": meta.classes[target_class],
                    "parent": {"run": str(parent.path), "weights_sha256": meta.weights_sha256}}
    details: dict = {"artifact": found.summary()}
    torch.manual_seed(seed)
    say(f"{found.summary()['carrying']} of {len(train)} training images carry {artifact} ({found.source})")

    if method in ("augment", "frame", "unframe"):
        if method == "augment" and not any(m is not None for m in found.masks) and not found.detect:
            raise UsageError(f"--method augment pastes and removes the artifact, and {artifact} has no masks in "
                             "the data (artifact_mask column); use --method pclarc or rrclarc")
        if method == "frame":
            if artifact != "ring":
                raise UsageError("--method frame normalises the dermatoscope frame: it needs --artifact ring")
            spec = replace(spec, frame=frame)
            record["frame"] = frame
        if method == "unframe":
            if artifact != "ring":
                raise UsageError("--method unframe removes the dermatoscope frame: it needs --artifact ring")
            spec = replace(spec, unframe=True)
        edit = method in ("augment", "unframe") or bool(edits)
        dataset = RevisionDataset(train, spec, found, edit=edit, seed=seed)
        record["edits"] = edit
        details["history"] = finetune(model, dataset, epochs=epochs, lr=base_lr * lr_factor, batch_size=batch,
                                      progress=say)
        record.update(epochs=epochs, lr=base_lr * lr_factor)
    else:
        say(f"activations at {layer}")
        activations = pooled_activations(model, layer, _preprocessed(train, spec)[0])
        cav = concept_vector(activations, found.carries, seed)
        details["concept_vector"] = {"cv_accuracy": cav["cv_accuracy"], "offset": cav["offset"],
                                     "channels": int(len(cav["vector"]))}
        record["layer"] = layer
        if method == "pclarc":
            from ..training.revision import attach_projection

            attach_projection(model, layer, cav["vector"], cav["offset"])
        else:
            penalty = RightReasonLoss(layer, cav["vector"], target_class, RR_STRENGTH)
            dataset = RevisionDataset(train, spec, found, edit=False, seed=seed)
            details["history"] = finetune(model, dataset, epochs=epochs, lr=base_lr * lr_factor, batch_size=batch,
                                          penalty=penalty, progress=say)
            record.update(epochs=epochs, lr=base_lr * lr_factor, strength=RR_STRENGTH)

    say("threshold on the validation split")
    target = meta.target_sensitivity if meta.target_sensitivity is not None else float(config.get("target_sensitivity", 0.9))
    try:  # the validation split's own carriers, to set the threshold without the artifact
        val_artifact = find_artifact(Path(data), val, artifact)
    except UsageError:  # e.g. no carrier among them: the split as it is
        val_artifact = None
    validation = _validation(model, val, spec, meta.positive_index, target, val_artifact)
    details["validation"] = validation
    details["seconds"] = round(time.perf_counter() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    # built beside OUT and renamed into place: a killed revise leaves no half run behind
    stage = Path(tempfile.mkdtemp(prefix=".revise-", dir=out.parent))
    try:
        save_run(stage, model, meta.arch, meta.classes, spec,
                 validation["threshold"] if validation["threshold"] is not None else meta.decision_threshold,
                 meta.positive_class, target_sensitivity=meta.target_sensitivity, config=meta.config, data=meta.data,
                 metrics={"val": validation}, revision=record)
        for name in (RunDir.SPLITS, RunDir.DATA_SUMMARY):
            if (parent.path / name).is_file():
                shutil.copy2(parent.path / name, stage / name)
        write_json(stage / "revision.json", {**record, **details,
                                             "weights_sha256": sha256_file(stage / RunDir.WEIGHTS)})
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out
