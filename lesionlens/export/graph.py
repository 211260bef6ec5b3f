"""PyTorch model -> ONNX graph with the contract's names: input `image`, outputs `logits` and
`probs`, dynamic batch.

Exporter choice: torch's TorchScript-based exporter (`dynamo=False`). Since torch 2.9 the default
is the torch.export-based one, which specialises a batch-1 example into a fixed batch and has open
correctness issues on ResNets; the TorchScript exporter gives a graph that matches PyTorch to
~1e-7 on all three architectures here. We still export with an example batch of 2 and validate
batch sizes 1 and 7 afterwards (`validate.py`), so a regression in either exporter is caught.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

DEFAULT_OPSET = 17


class ProbabilityHead(nn.Module):
    """model(x) -> (logits, softmax(logits)). Input float32 NCHW, already preprocessed."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        logits = self.model(image)
        return logits, torch.softmax(logits, dim=1)


class Uint8Input(nn.Module):
    """uint8 NHWC pixels at the model's size -> normalise inside the graph -> ProbabilityHead.

    Sends 4x fewer bytes to the GPU than float32 NCHW, and the host only resizes (no float
    maths). Normalisation matches `lesionlens.data.normalize`: (x / 255 - mean) / std.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.head = ProbabilityHead(model)
        self.register_buffer("scale", (torch.tensor(std, dtype=torch.float32) * 255.0).view(1, 3, 1, 1))
        self.register_buffer("shift", (torch.tensor(mean, dtype=torch.float32) * 255.0).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor):
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        return self.head((x - self.shift) / self.scale)


def export_graph(module: nn.Module, example: torch.Tensor, path: Path, opset: int = DEFAULT_OPSET) -> Path:
    """Trace `module` (eval mode) on `example` (batch >= 2) into `path` with a dynamic batch."""
    if example.shape[0] < 2:
        raise ValueError("export with an example batch >= 2, so no exporter can specialise batch 1")
    module = module.eval()
    axes = {name: {0: "batch"} for name in ("image", "logits", "probs")}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, on purpose
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module, (example,), str(path), dynamo=False, input_names=["image"],
            output_names=["logits", "probs"], dynamic_axes=axes, opset_version=opset,
            do_constant_folding=True,
        )
    return path
