"""The concept atlas: for each channel of the CRP layer, the dataset images where that concept
carried the most relevance (zennit-crp's relevance maximization), shown as patches cropped
around the concept's conditional heatmap. "Channel 1342" means nothing to a clinician; four
patches of blue-grey veil do. On data with feature masks (the generator's) each concept also
gets a name from the features its relevance falls on in those images (feature_names.py).

Built once (`lesionlens atlas RUN`, a pass over the dataset with a progress bar) into
RUN/concept_atlas/, tied to the weights' sha256. Reference patches are computed on first use
per concept and cached there as PNG strips, so the sidecar and the demo reuse them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch

from .._fileset import FileSet
from .._io import read_json, write_bytes, write_json
from ..data.preprocess import decode_for, preprocess, resize_to_spec
from ..data.readers import Sample
from ..errors import AtlasError, UsageError, display_path
from ..training.architectures import get_spec
from ..training.dataset import LesionDataset
from ..training.rundir import RunDir, load_run
from . import crp_compat  # noqa: F401  (np.int for numpy 2, before crp)
from .lrp import default_composite

PATCH = 64


def open_atlas(run: Path, model, meta):
    """The run's concept atlas, or None when there is none (or it is for other weights)."""
    try:
        return ConceptAtlas(run, model, meta)
    except AtlasError:
        return None


@dataclass
class AtlasResult:
    folder: Path
    images: int
    unreadable: list[tuple[str, str]]  # (path, reason): skipped, reported


def build_atlas(run: Path, samples: Optional[list[Sample]] = None, layer: Optional[str] = None,
                max_images: Optional[int] = None, batch_size: int = 16, progress: bool = True) -> AtlasResult:
    """Relevance maximization over `samples` (default: the run's train + val images), each image
    explained for its true class. Images that do not decode are skipped and listed; the atlas
    replaces the previous one as one set, and only when it is complete."""
    from crp.attribution import CondAttribution
    from crp.concepts import ChannelConcept
    from crp.visualization import FeatureVisualization

    from ..data.readers import LabeledImages
    from ..data.scan import scan_dataset

    run = RunDir(run)
    meta = run.read_metadata()
    spec = get_spec(meta.arch)
    layer = layer or spec.default_concept_layer
    if layer not in spec.concept_layers:  # before any work, and before a good atlas is replaced
        raise UsageError(f"--layer {layer!r} is not a concept layer of {meta.arch}; use one of {list(spec.concept_layers)}")
    samples = samples if samples is not None else run.read_splits(meta.classes, ("train", "val"))
    if max_images:
        samples = samples[:max_images]
    scan = scan_dataset(LabeledImages(list(samples), meta.classes, str(run.path), "atlas"), progress=progress,
                        with_hashes=False)
    if not scan.samples:
        raise AtlasError(f"{display_path(run.path)}: no readable images to build a concept atlas from "
                         f"({len(scan.unreadable)} unreadable)")
    model, meta = load_run(run)
    started = time.perf_counter()
    dataset = LesionDataset(scan.samples, meta.preprocessing, train=False)
    with FileSet(run.concept_atlas, members=lambda name: name in ("atlas.json", "crp", "patches", "names")).staging() as stage:
        visualization = FeatureVisualization(CondAttribution(model, no_param_grad=True), dataset,
                                             {layer: ChannelConcept()}, path=str(stage.path / "crp"))
        visualization.run(default_composite(model), 0, len(dataset), batch_size=batch_size, checkpoint=10**9)
        (stage.path / "patches").mkdir()  # filled on first use per concept (ConceptAtlas.references)
        (stage.path / "names").mkdir()  # likewise (ConceptAtlas.name)
        write_json(stage.path / "atlas.json", {
            "layer": layer, "weights_sha256": meta.weights_sha256, "images": [str(s.path) for s in scan.samples],
            "labels": [s.label for s in scan.samples], "seconds": round(time.perf_counter() - started, 1),
            "unreadable": [{"path": path, "reason": reason} for path, reason in scan.unreadable],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        })
        stage.publish()
    return AtlasResult(run.concept_atlas, len(scan.samples), scan.unreadable)


class ConceptAtlas:
    """Read side: reference patches for concepts of a built atlas."""

    def __init__(self, run: Path, model: torch.nn.Module, meta):
        self.run, self.model, self.meta = Path(run), model, meta
        # the real folder of the current set: patches cached below belong to this atlas and
        # vanish with it when the atlas is rebuilt
        self.folder = FileSet(RunDir(run).concept_atlas).current_set() or RunDir(run).concept_atlas
        index = self.folder / "atlas.json"
        name = display_path(self.run)
        if not index.is_file():
            raise AtlasError(f"{name}: no concept atlas; build it with `lesionlens atlas {name}`")
        self.index = read_json(index, AtlasError)
        if self.index.get("weights_sha256") != meta.weights_sha256:
            raise AtlasError(f"{display_path(index)} was built for other weights; rebuild it with `lesionlens atlas {name}`")
        self.layer = self.index["layer"]
        self.spec = meta.preprocessing
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
            from .render import png_bytes

            write_bytes(cached, png_bytes(np.hstack(patches)))
        return patches

    def name(self, channel: int, n: int = 4) -> Optional[dict]:
        """The concept's name from the feature masks under its relevance on its top `n` images
        (feature_names.name_from), cached as JSON; None when those images have no feature masks."""
        from . import feature_names

        cached = self.folder / "names" / self.layer / f"{channel}.json"
        if cached.is_file():
            return read_json(cached, AtlasError).get("name")
        per_image = []
        for index in self.top_images(channel, n):
            regions = feature_names.region_masks(Path(self.index["images"][index]), self.spec)
            if regions is not None:
                per_image.append(feature_names.shares(self._heat(index, channel)[1], regions))
        name = feature_names.name_from(per_image)
        write_json(cached, {"channel": channel, "name": name})
        return name

    def _heat(self, index: int, channel: int) -> tuple[np.ndarray, np.ndarray]:
        """(the image at the model's size, the concept's conditional heatmap on it)."""
        from crp.attribution import CondAttribution

        if self._composite is None:
            self._composite = default_composite(self.model)
        rgb = decode_for(self.index["images"][index], self.spec)
        x = torch.from_numpy(preprocess(rgb, self.spec))[None].requires_grad_()
        label = self.index["labels"][index]
        heat = CondAttribution(self.model, no_param_grad=True)(
            x, [{self.layer: [channel], "y": [label]}], self._composite).heatmap[0].detach().numpy()
        return resize_to_spec(rgb, self.spec), heat

    def _patch(self, index: int, channel: int) -> np.ndarray:
        return crop_around(*self._heat(index, channel))


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
