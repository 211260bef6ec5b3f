"""Training throughput: the real loop (decode + augment + preprocess + step) against the same
model and optimizer stepping on ready tensors, in one process, so the ratio shows what data
loading costs on this machine whatever else the machine is doing.

    .venv/bin/python benchmarks/train_throughput.py [--arch resnet50] [--size 128] [--batch 32]

Prints images/s for: ready tensors, the real loop on a cold cache (every image decoded from
PNG), the real loop warm (decoded images cached, the default with 0 workers), and the ratios;
and the memory-format check: the same step with a contiguous (NCHW) model and batch, which is
what training did on CPU before it went channels-last on every device.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from lesionlens.data.preprocess import PreprocessSpec
from lesionlens.data.readers import read_dataset
from lesionlens.data.synth import generate
from lesionlens.training.models import create_model
from lesionlens.training.trainer import DistEnv, Stepper, TrainConfig, learning_rate, make_loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=6, help="batches per measurement")
    parser.add_argument("--source-size", type=int, default=256, help="size of the synthetic PNGs")
    args = parser.parse_args()
    torch.manual_seed(0)
    n = args.batch * args.batches
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), n=n, size=args.source_size, seed=0, progress=False)
        samples = read_dataset(Path(tmp)).samples
        device = torch.device("cpu")
        config = TrainConfig(data=tmp, arch=args.arch, out=tmp, batch_size=args.batch, workers=-1)
        spec = PreprocessSpec(size=args.size)
        model = create_model(args.arch, 2).to(device).train().to(memory_format=torch.channels_last)  # as fit.py
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        step = Stepper(model, optimizer, nn.CrossEntropyLoss(), device, lambda s: learning_rate(s, 1000, 10, 1e-4))
        loader, sampler = make_loader(samples, spec, True, config, DistEnv(), device)

        ready = [(torch.randn(args.batch, 3, args.size, args.size), torch.randint(0, 2, (args.batch,)))
                 for _ in range(args.batches)]
        step(*ready[0])  # warm-up: allocator, kernels

        contiguous_model = create_model(args.arch, 2).to(device).train()
        contiguous_optimizer = torch.optim.AdamW(contiguous_model.parameters(), lr=1e-4)

        def contiguous_step(x, y):
            loss = nn.functional.cross_entropy(contiguous_model(x), y)
            contiguous_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            contiguous_optimizer.step()

        contiguous_step(*ready[0])

        def timed(batches, step=step) -> float:
            start, count = time.perf_counter(), 0
            for x, y in batches:
                step(x, y)
                count += len(y)
            return count / (time.perf_counter() - start)

        def epoch(e):
            sampler.set_epoch(e)
            loader.dataset.set_epoch(e)
            return iter(loader)

        results = {}
        results["ready tensors"] = timed(ready)
        contiguous = [timed(ready, contiguous_step)]
        results["real loop, cold (decode every PNG)"] = timed(epoch(1))
        results["real loop, warm (cached decode)"] = timed(epoch(2))
        results["ready tensors (again)"] = timed(ready)
        contiguous = (contiguous[0] + timed(ready, contiguous_step)) / 2
    base = (results["ready tensors"] + results["ready tensors (again)"]) / 2
    print(f"arch={args.arch} size={args.size} batch={args.batch} images/measurement={n} "
          f"source={args.source_size}px threads={torch.get_num_threads()} workers={loader.num_workers}")
    for name, value in results.items():
        print(f"  {name:38s} {value:8.1f} img/s   ratio to ready tensors {value / base:.3f}")
    print(f"  {'ready tensors, contiguous NCHW model':38s} {contiguous:8.1f} img/s   "
          f"channels-last speed-up {base / contiguous:.2f}x")


if __name__ == "__main__":
    main()
