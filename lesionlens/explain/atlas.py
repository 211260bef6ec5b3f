"""The concept atlas: for each channel of the CRP layer, the dataset images where that concept
carried the most relevance (zennit-crp's relevance maximization), shown as patches cropped
around the concept's conditional heatmap. "Channel 1342" means nothing to a clinician; four
patches of blue-grey veil do.

Built once (`lesionlens atlas RUN`, a pass over the dataset with a progress bar) into
RUN/concept_atlas/, tied to the weights' sha256. Reference patches are computed on first use
per concept and cached there as PNG strips, so the sidecar and the demo reuse them.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch

from ..data.decode import decode_image
from ..data.preprocess import preprocess, resize_to_spec
from ..data.readers import Sample
from ..training.checkpoint import write_json
from ..training.dataset import LesionDataset
from ..training.rundir import load_run, spec_of
from . import crp_compat  # noqa: F401  (np.int for numpy 2, before crp)
from .lrp import default_composite
from .methods import concept_layer

ATLAS_DIR = "concept_atlas"
PATCH = 64


class AtlasError(RuntimeError):
    """No atlas, or one built for other weights."""


def _run_samples(run: Path, classes: list[str], splits=("train", "val")) -> list[Sample]:
    with open(run / "splits.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] in splits and r["label"] in classes]
    return [Sample(Path(r["image"]), classes.index(r["label"])) for r in rows]


def build_atlas(run: Path, samples: Optional[list[Sample]] = None, layer: Optional[str] = None,
                max_images: Optional[int] = None, batch_size: int = 16) -> Path:
    """Relevance maximization over `samples` (default: the run's train + val images), each image
    explained for its true class. Returns the atlas folder."""
    from crp.attribution import CondAttribution
    from crp.concepts import ChannelConcept
    from crp.visualization import FeatureVisualization

    run = Path(run)
    model, meta = load_run(run)
    layer = layer or concept_layer(model)
    samples = samples if samples is not None else _run_samples(run, meta["classes"])
    if max_images:
        samples = samples[:max_images]
    if not samples:
        raise AtlasError(f"{run}: no images to build a concept atlas from")
    folder = run / ATLAS_DIR
    started = time.perf_counter()
    dataset = LesionDataset(samples, spec_of(meta), train=False)
    visualization = FeatureVisualization(CondAttribution(model, no_param_grad=True), dataset,
                                         {layer: ChannelConcept()}, path=str(folder / "crp"))
    visualization.run(default_composite(model), 0, len(dataset), batch_size=batch_size, checkpoint=10**9)
    write_json(folder / "atlas.json", {
        "layer": layer, "weights_sha256": meta["weights_sha256"], "images": [str(s.path) for s in samples],
        "labels": [s.label for s in samples], "seconds": round(time.perf_counter() - started, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    return folder


class ConceptAtlas:
    """Read side: reference patches for concepts of a built atlas."""

    def __init__(self, run: Path, model: torch.nn.Module, meta: dict):
        self.run, self.model, self.meta = Path(run), model, meta
        self.folder = self.run / ATLAS_DIR
        index = self.folder / "atlas.json"
        if not index.is_file():
            raise AtlasError(f"{self.run}: no concept atlas; build it with `lesionlens atlas {self.run}`")
        self.index = json.loads(index.read_text())
        if self.index["weights_sha256"] != meta["weights_sha256"]:
            raise AtlasError(f"{index} was built for other weights; rebuild it with `lesionlens atlas {self.run}`")
        self.layer = self.index["layer"]
        self.spec = spec_of(meta)
        self._composite = None

    @classmethod
    def open(cls, run: Path) -> "ConceptAtlas":
        model, meta = load_run(run)
        return cls(run, model, meta)

    def top_images(self, channel: int, n: int = 4) -> list[int]:
        from crp.helper import load_maximization

        data, relevance, _ = load_maximization(str(self.folder / "crp" / "RelMax_sum_normed"), self.layer)
        order = [int(i) for i, r in zip(data[:, channel], relevance[:, channel]) if r > 0]
        return order[:n]

    def references(self, channel: int, n: int = 4) -> list[np.ndarray]:
        """Up to n RGB uint8 patches (PATCH x PATCH) for `channel`, cached as one PNG strip."""
        cached = self.folder / "patches" / self.layer / f"{channel}.png"
        if cached.is_file():
            strip = cv2.cvtColor(cv2.imread(str(cached)), cv2.COLOR_BGR2RGB)
            return [strip[:, k * PATCH:(k + 1) * PATCH] for k in range(strip.shape[1] // PATCH)][:n]
        patches = [self._patch(index, channel) for index in self.top_images(channel, n)]
        if patches:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(cached), cv2.cvtColor(np.hstack(patches), cv2.COLOR_RGB2BGR))
        return patches

    def _patch(self, index: int, channel: int) -> np.ndarray:
        from crp.attribution import CondAttribution

        if self._composite is None:
            self._composite = default_composite(self.model)
        rgb = decode_image(self.index["images"][index])
        x = torch.from_numpy(preprocess(rgb, self.spec))[None].requires_grad_()
        label = self.index["labels"][index]
        heat = CondAttribution(self.model, no_param_grad=True)(
            x, [{self.layer: [channel], "y": [label]}], self._composite).heatmap[0].detach().numpy()
        return crop_around(resize_to_spec(rgb, self.spec), heat)


def crop_around(rgb: np.ndarray, heatmap: np.ndarray, keep: float = 0.3, min_fraction: float = 0.25) -> np.ndarray:
    """The square around the positive relevance (pixels above `keep` x max), at least
    `min_fraction` of the image side, resized to PATCH x PATCH."""
    positive = np.clip(heatmap, 0, None)
    size = rgb.shape[0]
    if positive.max() <= 0:
        return cv2.resize(rgb, (PATCH, PATCH), interpolation=cv2.INTER_AREA)
    ys, xs = np.nonzero(positive >= keep * positive.max())
    side = int(max(min_fraction * size, np.ptp(ys) + 1, np.ptp(xs) + 1))
    cy, cx = int(ys.mean()), int(xs.mean())
    top = int(np.clip(cy - side // 2, 0, size - side))
    left = int(np.clip(cx - side // 2, 0, size - side))
    return cv2.resize(rgb[top:top + side, left:left + side], (PATCH, PATCH), interpolation=cv2.INTER_AREA)
