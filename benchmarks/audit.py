"""`lesionlens audit` speed: the dataset audit on many images, and the model audit on 600.

    .venv/bin/python benchmarks/audit.py [--images 5000] [--size 128] [--model-images 600] [--arch resnet50]

1. Dataset audit (no model): decode + dark-field detector + perceptual hash on a thread pool,
   then the association tests and duplicates; images/s, with the time of each stage, and the
   ratio to a plain threaded decode of the same files (the floor: reading the images at all).
2. Model audit (`audit --run`) on --model-images images of a ring-biased set with a
   random-weight run of --arch at 96 px: the time of each stage (heatmaps, SpRAy,
   counterfactuals), and the ratio to one plain forward pass over the same images.
Synthetic images are generated first (not timed); goals: >= 200 images/s on 2 cores, and the
model audit within 10 minutes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _print_stages(timings: dict) -> None:
    for stage, seconds in timings.items():
        print(f"    {stage:30s} {seconds:7.2f} s")


def dataset_part(root: Path, images: int, size: int) -> None:
    from lesionlens.audit.dataset_audit import audit_dataset
    from lesionlens.data.decode import decode_image
    from lesionlens.data.readers import read_dataset
    from lesionlens.data.synth import generate

    data = root / "audit-data"
    generate(data, n=images, size=size, seed=0, artifact="ring", artifact_rate=0.3, progress=False)
    paths = [s.path for s in read_dataset(data).samples]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(lambda p: decode_image(p, reduce_to=256).shape, paths))
    decode = time.perf_counter() - start
    start = time.perf_counter()
    audit = audit_dataset(data, progress=False)
    total = time.perf_counter() - start
    print(f"\ndataset audit, {len(paths)} images of {size} px, {os.cpu_count()} cores")
    print(f"  plain threaded decode            {decode:7.2f} s  {len(paths) / decode:7.0f} images/s")
    print(f"  audit (all of it)                {total:7.2f} s  {len(paths) / total:7.0f} images/s"
          f"   x{total / decode:.2f} the decode alone")
    _print_stages(audit.timings)


def model_part(root: Path, images: int, arch: str) -> None:
    import numpy as np
    import torch

    from lesionlens.audit.model_audit import audit_model
    from lesionlens.data.synth import generate
    from lesionlens.explain.evaluation.data import load_eval_images
    from lesionlens.training.rundir import load_run, random_run

    data = root / "audit-model-data"
    generate(data, n=images, size=128, seed=1, artifact="ring", artifact_rate=0.5, progress=False)
    run = random_run(root / "run", arch, size=96)
    model, meta = load_run(run)
    loaded = load_eval_images(data, meta.preprocessing, meta.classes, images)
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(loaded.images), 32):
            model(torch.from_numpy(np.ascontiguousarray(loaded.images[i:i + 32])))
    forward = time.perf_counter() - start
    start = time.perf_counter()
    audit = audit_model(run, data, n=images)
    total = time.perf_counter() - start
    print(f"\nmodel audit, {images} images, {arch} at 96 px (random weights), {torch.get_num_threads()} threads")
    print(f"  one forward pass over them       {forward:7.2f} s")
    print(f"  audit_model (all of it)          {total:7.2f} s   x{total / forward:.1f} the forward pass"
          f"   ({'within' if total <= 600 else 'OVER'} the 10-minute goal)")
    _print_stages(audit.timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--model-images", type=int, default=600)
    parser.add_argument("--arch", default="resnet50")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dataset_part(Path(tmp), args.images, args.size)
        model_part(Path(tmp), args.model_images, args.arch)


if __name__ == "__main__":
    main()
