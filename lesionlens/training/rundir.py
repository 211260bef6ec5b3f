"""The run directory contract: model.safetensors + model.json (+ metrics.json, history.csv,
splits.csv, duplicates.csv, plots/). `load_run` is how every later layer gets a model."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch

from ..data.preprocess import PreprocessSpec
from .checkpoint import load_weights, sha256_file
from .models import create_model

MODEL_FILE = "model.safetensors"
META_FILE = "model.json"


class RunError(ValueError):
    """A run directory is missing, incomplete or inconsistent."""


def versions() -> dict[str, str]:
    import numpy
    import timm

    from .. import __version__

    return {
        "lesionlens": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def read_metadata(run: Path) -> dict[str, Any]:
    run = Path(run)
    meta_path = run / META_FILE
    if not meta_path.is_file():
        raise RunError(f"{run}: not a finished run directory ({META_FILE} missing)")
    try:
        return json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise RunError(f"{meta_path}: unreadable JSON ({exc})") from None


def load_run(run: Path, device: str = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """(model in eval mode on `device`, metadata). Refuses weights whose sha256 differs from the
    one recorded at training time."""
    run = Path(run)
    meta = read_metadata(run)
    weights = run / MODEL_FILE
    if not weights.is_file():
        raise RunError(f"{run}: {MODEL_FILE} missing")
    actual = sha256_file(weights)
    if actual != meta.get("weights_sha256"):
        raise RunError(f"{weights}: sha256 {actual} differs from model.json's {meta.get('weights_sha256')}")
    model = create_model(meta["arch"], len(meta["classes"]))
    load_weights(model, weights)
    return model.to(device).eval(), meta


def save_run(run: Path, model: torch.nn.Module, arch: str, classes: list[str], spec: PreprocessSpec,
             decision_threshold: float | None = None, positive_class: str | None = None, **extra: Any) -> Path:
    """Write a minimal run directory (weights + model.json) around a model trained elsewhere,
    so it can be exported, explained and served like one `lesionlens train` made."""
    from .checkpoint import save_weights, write_json

    run = Path(run)
    sha = save_weights(model, run / MODEL_FILE)
    write_json(run / META_FILE, {
        "arch": arch, "classes": list(classes), "positive_class": positive_class,
        "preprocessing": spec.to_dict(), "decision_threshold": decision_threshold,
        "weights_file": MODEL_FILE, "weights_sha256": sha, "versions": versions(), **extra,
    })
    return run


def random_run(run: Path, arch: str, size: int = 224, classes=("benign", "melanoma"), seed: int = 0) -> Path:
    """A run around random weights, BatchNorm statistics warmed on noise so activations are
    not trivial: for benchmarks and tests that need an architecture, not a trained model."""
    torch.manual_seed(seed)
    model = create_model(arch, len(classes)).train()
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else model.classifier
    # logits of order 1, as in a trained model (the training init keeps them tiny on purpose)
    torch.nn.init.normal_(classifier.weight, std=classifier.in_features ** -0.5)
    with torch.no_grad():
        # timm zero-initialises each residual block's last BatchNorm scale (a training trick);
        # left at zero, every residual branch is cut and e.g. CRP's default layer gets no relevance
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d) and not module.weight.any():
                module.weight.fill_(1.0)
        for _ in range(3):
            model(torch.randn(8, 3, size, size))
    return save_run(run, model.eval(), arch, list(classes), PreprocessSpec(size=size), 0.5, classes[-1])


def spec_of(meta: dict[str, Any]) -> PreprocessSpec:
    return PreprocessSpec.from_dict(meta["preprocessing"])
