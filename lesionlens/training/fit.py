"""`train(config)`: data preparation, the epoch loop with checkpoints and early stopping, and the
final run directory (RunDir: weights, model.json, metrics.json, history.csv, plots/)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from .._io import sha256_file
from ..data.preprocess import PreprocessSpec
from ..data.readers import default_positive_class
from ..errors import DatasetError, TrainingError, display_path
from .checkpoint import MANIFEST, load_training_state, read_manifest, save_training_state, save_weights
from .metrics import classification_metrics, roc_auc, threshold_for_sensitivity
from .models import create_model
from .prepare import PreparedData, load_prepared, prepare_data
from .rundir import RunDir, RunMetadata, versions
from .trainer import (
    DistEnv,
    Stepper,
    TrainConfig,
    _barrier,
    _broadcast,
    class_weights,
    init_distributed,
    learning_rate,
    make_loader,
    predict_probs,
    resolve_device,
)

log = logging.getLogger("lesionlens")


def _positive_index(classes: list[str], requested: Optional[str]) -> Optional[int]:
    if requested:
        if requested not in classes:
            raise DatasetError(f"--positive-class {requested!r} is not one of {classes}")
        return classes.index(requested)
    name = default_positive_class(classes)
    return classes.index(name) if name else None


def _start_or_resume(config: TrainConfig, run: RunDir) -> tuple[TrainConfig, bool]:
    state = run.checkpoint / MANIFEST
    if config.resume and state.is_file():
        saved = TrainConfig.from_dict(read_manifest(run.checkpoint)["progress"]["config"])
        # A resumed run keeps its data, model and schedule; only where and how long may change.
        for key in ("epochs", "device", "workers", "progress", "patience"):
            if getattr(config, key) is not None:
                setattr(saved, key, getattr(config, key))
        saved.resume = True
        return saved, True
    if config.resume:
        log.info("--resume: nothing to resume in %s, starting a new run", display_path(run.path))
    elif state.is_file() or run.is_finished():
        raise TrainingError(f"{display_path(run.path)} already holds a run; pass --resume to continue it "
                            "or choose another --out")
    if not config.data or not config.arch:
        raise TrainingError("--data and --arch are required for a new run")
    return config.with_recipe(), False


def train(config: TrainConfig, on_epoch_end: Optional[Callable[[int, dict], None]] = None) -> Path:
    """Train one model into config.out; returns the run directory. `on_epoch_end(epoch, row)`
    is called after each epoch's checkpoint is safely on disk (progress reporting, tests)."""
    run = RunDir(config.out)
    config, resuming = _start_or_resume(config, run)
    env = init_distributed(torch.device("cuda" if config.device == "cuda" else "cpu"))
    device = resolve_device(config.device, env)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    progress = config.progress and env.main
    run.path.mkdir(parents=True, exist_ok=True)

    if env.main and not resuming:
        prepare_data(Path(config.data), run, Path(config.image_root) if config.image_root else None,
                     config.val_fraction, config.test_fraction, config.seed, progress=progress)
    _barrier(env)
    data: PreparedData = load_prepared(run)
    classes, train_samples, val_samples = data.classes, data.split("train"), data.split("val")
    if not val_samples or not train_samples:
        raise DatasetError("the split left no training or no validation images; add data or change --val-fraction")
    positive = _positive_index(classes, config.positive_class)
    spec = PreprocessSpec(size=config.image_size)

    torch.manual_seed(config.seed)
    model = create_model(config.arch, len(classes), config.pretrained).to(device)
    # channels-last on every device: oneDNN's CPU convolutions gain from it as cuDNN's do (one
    # training step at 96 px, batch 32, 2-core CPU: ResNet50 1.24x, EfficientNet-B0 1.37x faster;
    # benchmarks/train_throughput.py)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    train_loader, sampler = make_loader(train_samples, spec, True, config, env, device)
    val_loader, _ = make_loader(val_samples, spec, False, config, env, device)
    steps_per_epoch = len(train_loader)
    total_steps = steps_per_epoch * config.epochs
    warmup = min(int(config.warmup_epochs * steps_per_epoch), total_steps // 2)
    weights = class_weights([s.label for s in train_samples], len(classes)) if config.balance == "weights" else None
    loss_fn = nn.CrossEntropyLoss(weight=weights.to(device) if weights is not None else None)

    progress_state = {"epoch": 0, "history": [], "best_auc": -1.0, "best_epoch": 0, "stale_epochs": 0}
    scaler_state = None
    if resuming:
        progress_state, scaler_state = load_training_state(run.checkpoint, model, optimizer)
        log.info("resuming %s after epoch %d", display_path(run.path), progress_state["epoch"])
    net = model
    if env.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    stepper = Stepper(net, optimizer, loss_fn, device,
                      lambda step: learning_rate(step, total_steps, warmup, config.lr))
    stepper.step_count = progress_state["epoch"] * steps_per_epoch
    if scaler_state and stepper.scaler is not None:
        stepper.scaler.load_state_dict(scaler_state)  # fp16 resumes exactly, loss scale included

    from tqdm.auto import tqdm

    for epoch in range(progress_state["epoch"] + 1, config.epochs + 1):
        # early stopping may end a run only in its second half: the first half is where a model
        # trained from scratch at a high learning rate is still finding its way (EfficientNet at
        # lr 1e-2 sat at validation AUC 0.50-0.63 for its first 8 epochs in one run, then reached 0.99)
        if progress_state["stale_epochs"] >= config.patience and epoch > config.epochs // 2 + 1:
            log.info("early stop: validation ROC-AUC has not improved for %d epochs", progress_state["stale_epochs"])
            break
        started = time.perf_counter()
        torch.manual_seed(config.seed * 100_003 + epoch)  # dropout etc.: same per epoch on resume
        sampler.set_epoch(epoch)
        train_loader.dataset.set_epoch(epoch)
        net.train()
        losses = [stepper(x, y) for x, y in tqdm(train_loader, desc=f"epoch {epoch}/{config.epochs}",
                                                  disable=not progress, leave=False)]
        row = None
        if env.main:
            probs, labels, val_loss = predict_probs(model, val_loader, device)
            auc = roc_auc(labels, probs)
            row = {
                "epoch": epoch,
                "train_loss": round(float(np.mean(losses)), 6),
                "val_loss": round(val_loss, 6),
                "val_roc_auc": None if auc is None else round(auc, 6),
                "val_accuracy": round(float((probs.argmax(1) == labels).mean()), 6),
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - started, 2),
            }
            score = auc if auc is not None else -val_loss
            improved = score > progress_state["best_auc"]
            if improved:
                progress_state.update(best_auc=score, best_epoch=epoch, stale_epochs=0)
                save_weights(model, run.weights)
            else:
                progress_state["stale_epochs"] += 1
            progress_state["history"].append(row)
            progress_state["epoch"] = epoch
            progress_state["config"] = asdict(config)
            save_training_state(run.checkpoint, model, optimizer, progress_state,
                                None if stepper.scaler is None else stepper.scaler.state_dict())
            run.write_history(progress_state["history"])
            log.info("epoch %d/%d  train_loss %.4f  val_loss %.4f  val_auc %s  %s%.1fs", epoch, config.epochs,
                     row["train_loss"], row["val_loss"], row["val_roc_auc"], "(best) " if improved else "",
                     row["seconds"])
        progress_state = _broadcast(env, progress_state)
        if on_epoch_end is not None and env.main:
            on_epoch_end(epoch, row)

    if env.main:
        finalize(run, config, data, positive, spec, device, progress,
                 {"world_size": env.world, "steps_per_epoch": steps_per_epoch})
    _barrier(env)
    if env.world > 1:
        torch.distributed.destroy_process_group()
    return run.path


def finalize(run: RunDir, config: TrainConfig, data: PreparedData, positive: Optional[int],
             spec: PreprocessSpec, device: torch.device, progress: bool, distributed: dict) -> dict:
    """Reload the best epoch, choose the decision threshold on validation, score val (and a
    test split if there is one), and write metrics.json, plots/ and model.json (last: its
    presence marks a finished run)."""
    from .checkpoint import load_weights
    from .plots import plot_confusion, plot_history, plot_roc

    state = read_manifest(run.checkpoint)["progress"]
    classes = data.classes
    model = create_model(config.arch, len(classes)).to(device)
    load_weights(model, run.weights, config.arch)
    metrics: dict = {"best_epoch": state["best_epoch"], "epochs_run": state["epoch"]}
    threshold = None
    for split in ("val", "test"):
        samples = data.split(split)
        if not samples:
            continue
        loader, _ = make_loader(samples, spec, False, config, DistEnv(), device)
        probs, labels, loss = predict_probs(model, loader, device, progress, desc=f"scoring {split}")
        if split == "val" and positive is not None:
            threshold = threshold_for_sensitivity(labels == positive, probs[:, positive], config.target_sensitivity)
        metrics[split] = classification_metrics(labels, probs, classes, positive, threshold)
        metrics[split]["loss"] = loss
        if split == "val":
            run.plots.mkdir(exist_ok=True)
            plot_history(state["history"], run.plots / "history.png")
            plot_roc(labels, probs, classes, run.plots / "roc.png")
            plot_confusion(metrics[split]["confusion_matrix"], classes, run.plots / "confusion_matrix.png")
    run.write_metrics(metrics)
    run.write_metadata(RunMetadata(
        arch=config.arch,
        classes=classes,
        positive_class=classes[positive] if positive is not None else None,
        preprocessing=spec,
        decision_threshold=threshold,
        target_sensitivity=config.target_sensitivity,
        weights_file=RunDir.WEIGHTS,
        weights_sha256=sha256_file(run.weights),
        versions=versions(),
        config={k: v for k, v in asdict(config).items() if k != "progress"},
        data=dict(data.summary),
        metrics={split: {k: metrics[split].get(k) for k in ("roc_auc", "accuracy", "balanced_accuracy",
                                                             "sensitivity", "specificity")}
                 for split in ("val", "test") if split in metrics},
        best_epoch=state["best_epoch"],
        distributed=distributed,
    ))
    log.info("run written to %s (best epoch %d, val ROC-AUC %s)", display_path(run.path), state["best_epoch"],
             metrics["val"].get("roc_auc"))
    return metrics
