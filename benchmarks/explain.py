"""LRP cost against a plain gradient, per architecture, same model and inputs, one process.

    .venv/bin/python benchmarks/explain.py [--arch ...] [--size 224] [--batch 32] [--iters 5] [--device cpu|cuda]

Prints, at batch 1 (latency) and per image at --batch:
  gradient (input only)      torch.autograd.grad of the target logits w.r.t. the input
  gradient (+ parameters)    forward + backward as in training: loss.backward() (weight grads too)
  LRP (zennit, prepared)     our composite registered once (as the sidecar does), relevance inside
  LRP (zennit, per call)     composite registered and removed around every call
  CRP, --concepts heatmaps   zennit-crp conditional heatmaps of the top concepts (batch 1 only)
with LRP's ratio to both gradients. Random weights (values do not change the speed).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def median_ms(fn, iters: int, sync) -> float:
    fn()
    sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def bench(arch: str, size: int, batch: int, iters: int, device: torch.device, concepts: int) -> None:
    from zennit.attribution import Gradient

    from lesionlens.explain.lrp import default_composite, lrp_relevance
    from lesionlens.explain.methods import run_crp
    from lesionlens.training.rundir import load_run, random_run

    with tempfile.TemporaryDirectory() as tmp:
        model, _ = load_run(random_run(Path(tmp) / "run", arch, size=size), str(device))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    composite = default_composite(model)
    rows: dict[tuple[str, int], float] = {}
    for b in (1, batch):
        x = torch.randn(b, 3, size, size, device=device)
        target = torch.zeros(b, dtype=torch.long, device=device)
        n = iters if b == 1 else max(2, iters // 2)

        def grad_input():
            xi = x.clone().requires_grad_()
            torch.autograd.grad(model(xi)[torch.arange(b), target].sum(), xi)

        def grad_all():
            model.zero_grad(set_to_none=True)
            xi = x.clone().requires_grad_()
            model(xi)[torch.arange(b), target].sum().backward()

        def start(out):
            return out * torch.nn.functional.one_hot(target, out.shape[1]).to(out.dtype)

        rows[("gradient (input only)", b)] = median_ms(grad_input, n, sync)
        rows[("gradient (+ parameters)", b)] = median_ms(grad_all, n, sync)
        with Gradient(model=model, composite=composite) as attributor:
            rows[("LRP (zennit, prepared)", b)] = median_ms(lambda: attributor(x, start), n, sync)
        rows[("LRP (zennit, per call)", b)] = median_ms(lambda: lrp_relevance(model, x, target, composite), n, sync)
        if b == 1:
            rows[(f"CRP, {concepts} concept heatmaps", b)] = median_ms(
                lambda: run_crp(model, x, target, composite, concepts=concepts), max(2, n // 2), sync)
    # identical heatmaps: prepared vs per-call
    x = torch.randn(2, 3, size, size, device=device)
    _, a = lrp_relevance(model, x, torch.zeros(2, dtype=torch.long, device=device), composite)
    _, b_ = lrp_relevance(model, x, torch.zeros(2, dtype=torch.long, device=device))
    cosine = torch.nn.functional.cosine_similarity(a.flatten(1), b_.flatten(1)).min().item()
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n{arch} @ {size}px, {name}")
    for b in (1, batch):
        g_in, g_all = rows[("gradient (input only)", b)], rows[("gradient (+ parameters)", b)]
        for (label, bb), ms in rows.items():
            if bb != b:
                continue
            per = f"{ms:9.1f} ms" if b == 1 else f"{ms / b:9.2f} ms/img"
            print(f"  batch {b:3d}  {label:30s} {per}   x{ms / g_in:4.2f} input-gradient   x{ms / g_all:4.2f} full gradient")
    print(f"  prepared vs fresh composite: heatmap cosine {cosine:.6f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["resnet50", "attention_resnet50", "efficientnet_b0_relu"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--concepts", type=int, default=32)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    for arch in args.arch:
        bench(arch, args.size, args.batch, args.iters, torch.device(args.device), args.concepts)


if __name__ == "__main__":
    main()
