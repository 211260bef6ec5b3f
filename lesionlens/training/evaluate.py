"""`lesionlens evaluate RUN --data DATA`: re-score a finished run on any dataset, at the run's
own decision threshold. Unreadable images are listed and skipped, as in training."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from ..data.readers import read_dataset, restrict_to_classes
from ..data.scan import scan_dataset
from ..errors import DatasetError, display_path
from .isic_metrics import isic_scores
from .metrics import classification_metrics
from .rundir import load_run
from .trainer import DistEnv, TrainConfig, make_loader, predict_probs, resolve_device

log = logging.getLogger("lesionlens")


def evaluate(run: Path, data: Path, image_root: Optional[Path] = None, device: str = "auto",
             batch_size: int = 64, progress: bool = True) -> dict:
    dev = resolve_device(device)
    model, meta = load_run(Path(run), str(dev))
    dataset = restrict_to_classes(read_dataset(Path(data), image_root), meta.classes)
    # the same readable/unreadable pass as training (the loader decodes again: not a hot path)
    scan = scan_dataset(dataset, progress=progress, with_hashes=False)
    unreadable = [{"path": path, "reason": reason} for path, reason in scan.unreadable]
    for item in unreadable:
        log.warning("skipped %s: %s", display_path(item["path"]), item["reason"])
    if not scan.samples:
        raise DatasetError(f"{display_path(data)}: no readable images to evaluate")
    config = TrainConfig(data=str(data), arch=meta.arch, out=str(run), batch_size=batch_size)
    loader, _ = make_loader(scan.samples, meta.preprocessing, False, config, DistEnv(), dev)
    probs, labels, loss = predict_probs(model, loader, dev, progress)
    metrics = classification_metrics(labels, probs, meta.classes, meta.positive_index, meta.decision_threshold)
    # the ISIC challenge's metrics, as its official scorer computes them (isic_metrics.py)
    metrics["isic"] = isic_scores(labels, probs, meta.classes, meta.positive_index)
    metrics.update(loss=loss, data=str(data), skipped_unreadable=len(unreadable), unreadable=unreadable)
    return metrics
