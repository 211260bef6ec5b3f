"""Export validation: the ONNX checker, then ONNX Runtime (CPU) against PyTorch on random inputs
and on real images through the shared preprocessing, at batch sizes 1 and 7.

An export that misses its bounds fails: a model that disagrees with the one that was validated
in training is worse than no model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..data.preprocess import PreprocessSpec, normalize

# (max |probs difference|, minimum top-1 agreement) per precision
BOUNDS = {"fp32": (1e-4, 1.0), "fp16": (1e-2, 0.995)}
BATCH_SIZES = (1, 7)


@dataclass
class Probe:
    """Inputs to compare on: uint8 pixels at the model's size (valid for every variant)."""

    pixels: np.ndarray  # (N, S, S, 3) uint8
    labels: Optional[np.ndarray]  # (N,) when the pixels are real, labelled images
    source: str


def random_probe(spec: PreprocessSpec, n: int = 8, seed: int = 0) -> Probe:
    rng = np.random.default_rng(seed)
    return Probe(rng.integers(0, 256, (n, spec.size, spec.size, 3), dtype=np.uint8), None, "random pixels")


def session_cpu(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_session(session, pixels: np.ndarray, spec: PreprocessSpec, batch: int) -> np.ndarray:
    """probs from an ONNX session, feeding whichever input its graph declares."""
    meta = session.get_inputs()[0]
    out = []
    for start in range(0, len(pixels), batch):
        chunk = pixels[start : start + batch]
        if meta.type == "tensor(uint8)":
            feed = chunk
        else:
            feed = np.stack([normalize(p, spec) for p in chunk])
        out.append(session.run(["probs"], {meta.name: feed})[0])
    return np.concatenate(out)


@torch.no_grad()
def torch_probs(model: torch.nn.Module, pixels: np.ndarray, spec: PreprocessSpec, batch: int = 16) -> np.ndarray:
    out = []
    for start in range(0, len(pixels), batch):
        x = torch.from_numpy(np.stack([normalize(p, spec) for p in pixels[start : start + batch]]))
        out.append(torch.softmax(model(x), 1).numpy())
    return np.concatenate(out)


def compare(reference: np.ndarray, candidate: np.ndarray, labels: Optional[np.ndarray] = None) -> dict:
    result = {
        "n": int(len(reference)),
        "max_abs_probs_diff": float(np.abs(reference - candidate).max()),
        "top1_agreement": float((reference.argmax(1) == candidate.argmax(1)).mean()),
    }
    if labels is not None:
        result["accuracy_reference"] = float((reference.argmax(1) == labels).mean())
        result["accuracy_candidate"] = float((candidate.argmax(1) == labels).mean())
        result["accuracy_change"] = result["accuracy_candidate"] - result["accuracy_reference"]
    return result


def float_noise_check(session, model: torch.nn.Module, spec: PreprocessSpec, n: int = 7) -> Optional[dict]:
    """Gaussian float inputs (off the pixel lattice), for float-input graphs only."""
    meta = session.get_inputs()[0]
    if meta.type == "tensor(uint8)":
        return None
    x = np.random.default_rng(1).standard_normal((n, 3, spec.size, spec.size)).astype(np.float32)
    with torch.no_grad():
        ref = torch.softmax(model(torch.from_numpy(x)), 1).numpy()
    got = np.concatenate([session.run(["probs"], {meta.name: x[i : i + 1]})[0] for i in range(n)])
    return compare(ref, got)


def validate_variant(path: Path, model: torch.nn.Module, spec: PreprocessSpec, precision: str,
                     probes: list[Probe]) -> dict:
    """Check `path` against `model` (the float PyTorch model). Returns a report with `passed`;
    precision "int8" has no bound (quantisation's cost is reported, the user decides)."""
    import onnx

    report: dict = {"file": path.name, "precision": precision}
    onnx.checker.check_model(str(path), full_check=True)
    report["onnx_checker"] = "passed (full_check)"
    session = session_cpu(path)
    report["input"] = {"name": session.get_inputs()[0].name, "type": session.get_inputs()[0].type}
    checks = {}
    for probe in probes:
        reference = torch_probs(model, probe.pixels, spec)
        for batch in BATCH_SIZES:
            got = run_session(session, probe.pixels, spec, batch)
            checks[f"{probe.source}, batch {batch}"] = compare(reference, got, probe.labels)
    noise = float_noise_check(session, model, spec)
    if noise is not None:
        checks["gaussian float input, batch 1"] = noise
    report["checks"] = checks
    worst_diff = max(c["max_abs_probs_diff"] for c in checks.values())
    worst_agreement = min(c["top1_agreement"] for c in checks.values())
    report["max_abs_probs_diff"] = worst_diff
    report["min_top1_agreement"] = worst_agreement
    if precision in BOUNDS:
        max_diff, min_agreement = BOUNDS[precision]
        report["bounds"] = {"max_abs_probs_diff": max_diff, "min_top1_agreement": min_agreement}
        report["passed"] = bool(worst_diff <= max_diff and worst_agreement >= min_agreement)
    else:
        report["bounds"] = None
        report["passed"] = True
    return report
