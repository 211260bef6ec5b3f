"""LRP cost against a plain gradient, per architecture, same model and inputs, one process.

    .venv/bin/python benchmarks/explain.py [--arch ...] [--size 224] [--batch 32] [--iters 5] [--device cpu|cuda]
                                           [--compare RECIPE ...]

Prints, at batch 1 (latency) and per image at --batch:
  gradient (input only)      torch.autograd.grad of the target logits w.r.t. the input
  gradient (+ parameters)    forward + backward as in training: loss.backward() (weight grads too)
  LRP fast (prepared)        the hook-free engine (fast_lrp.py), held on a copy as the sidecar does
  LRP fast (per call)        the same, canonized and patched around every call
  LRP zennit (prepared)      our zennit composite registered once on a copy (the reference)
  LRP (stock zennit, prep.)  the straightforward zennit rules (two-term ZPlus, Pass hooks on
                             every ReLU), prepared the same way: what our exact shortcuts save
  explain(), lrp (prepared)  the whole Explainer.explain call (prediction from the LRP pass's
                             own forward), as the sidecar runs it (batch 1 only)
  CRP fast / zennit-crp      conditional heatmaps of the top --concepts channels (batch 1 only):
                             fast_crp.py's batched pass vs zennit-crp's CondAttribution
with LRP's ratio to both gradients, and the headline ratio (fast LRP / full gradient) once more
from interleaved pairs, which the machine's drifting load disturbs far less; `--compare` adds
that ratio for other recipes (e.g. `epsilon_shared+bias=share_input`) against the same full
gradient, so a candidate's cost is read beside the default's. Random weights (values do not
change the speed).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
from pathlib import Path

import torch
from timing import interleaved_ratio, median_ms


def bench(arch: str, size: int, batch: int, iters: int, device: torch.device, concepts: int,
          compare: tuple[str, ...] = ()) -> None:
    import copy

    from zennit.rules import ZPlus

    from lesionlens.explain import Explainer
    from lesionlens.explain.canonizers import canonizers_for
    from lesionlens.explain.lrp import RecipeComposite, default_composite, prepared_relevance
    from lesionlens.explain.rules import get_recipe
    from lesionlens.training.models import spec_of_model
    from lesionlens.training.rundir import load_run, random_run

    with tempfile.TemporaryDirectory() as tmp:
        model, _ = load_run(random_run(Path(tmp) / "run", arch, size=size), str(device))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    from lesionlens.explain.fast_lrp import fast_lrp, fast_lrp_relevance

    lrp_explainer = Explainer(model, "lrp")
    crp_fast_explainer = Explainer(model, "crp", concepts=concepts)
    crp_zennit_explainer = Explainer(model, "crp", concepts=concepts, engine="zennit")

    prepared, stock = copy.deepcopy(model), copy.deepcopy(model)
    default_composite(prepared).register(prepared)
    fast_context = fast_lrp(copy.deepcopy(model))
    fast = fast_context.__enter__()
    candidates = {recipe: fast_lrp(copy.deepcopy(model), recipe) for recipe in compare}
    candidate_models = {recipe: context.__enter__() for recipe, context in candidates.items()}
    RecipeComposite(stock, get_recipe(spec_of_model(stock).composite), canonizers_for(stock), zplus=ZPlus,
                    hook_relus=True).register(stock)
    rows: dict[tuple[str, int], float] = {}
    paired: dict = {}  # batch, or (compared recipe, batch): ratio
    # zennit keeps every hooked layer's input for the backward pass: at 224 px a batch of 32
    # needs several GB per variant (the stock rules ~20 GB on ResNet50), so stock is timed at
    # batch 1 only and memory is released between variants.
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

        rows[("gradient (input only)", b)] = median_ms(grad_input, n, sync)
        rows[("gradient (+ parameters)", b)] = median_ms(grad_all, n, sync)
        rows[("LRP fast (prepared)", b)] = median_ms(lambda: prepared_relevance(fast, x, target), n, sync)
        # the goal's number, measured pairwise (LRP and the full gradient alternating)
        _, _, paired[b] = interleaved_ratio(lambda: prepared_relevance(fast, x, target), grad_all,
                                            max(3, n), sync)
        for recipe, held in candidate_models.items():
            _, _, paired[(recipe, b)] = interleaved_ratio(lambda: prepared_relevance(held, x, target), grad_all,
                                                          max(3, n), sync)
        rows[("LRP fast (per call)", b)] = median_ms(lambda: fast_lrp_relevance(model, x, target), n, sync)
        gc.collect()
        rows[("LRP zennit (prepared)", b)] = median_ms(lambda: prepared_relevance(prepared, x, target), n, sync)
        gc.collect()
        if b == 1:
            rows[("LRP (stock zennit, prepared)", b)] = median_ms(
                lambda: prepared_relevance(stock, x, target), n, sync)
        if b == 1:
            # what the sidecar runs per request: prediction and heatmap from one forward
            rows[("explain(), lrp (prepared)", b)] = median_ms(
                lambda: lrp_explainer.explain(x), n, sync)
            rows[(f"CRP fast, {concepts} concepts", b)] = median_ms(
                lambda: crp_fast_explainer.explain(x, target.tolist()), n, sync)
            gc.collect()
            rows[(f"CRP zennit-crp, {concepts} concepts", b)] = median_ms(
                lambda: crp_zennit_explainer.explain(x, target.tolist()),
                max(2, n // 2), sync)
    # identical heatmaps: the fast engine vs the straightforward zennit computation
    x = torch.randn(2, 3, size, size, device=device)
    zero = torch.zeros(2, dtype=torch.long, device=device)
    _, a = prepared_relevance(fast, x, zero)
    _, b_ = prepared_relevance(stock, x, zero)
    cosine = torch.nn.functional.cosine_similarity(a.flatten(1), b_.flatten(1)).min().item()
    # and CRP: the batched fast pass vs zennit-crp, on the same concepts of one image
    crp_fast = crp_fast_explainer.explain(x[:1], [0])[0]
    crp_ref = crp_zennit_explainer.explain(x[:1], [0])[0]
    same_channels = [c.channel for c in crp_fast.concepts] == [c.channel for c in crp_ref.concepts]
    # scaled first: cosine_similarity clamps norms below 1e-8, and with random weights some
    # conditional heatmaps are that small in total
    crp_cosine = min(torch.nn.functional.cosine_similarity(p.heatmap.flatten() / q.heatmap.abs().max(),
                                                           q.heatmap.flatten() / q.heatmap.abs().max(), 0).item()
                     for p, q in zip(crp_fast.concepts, crp_ref.concepts) if q.heatmap.abs().max() > 0)
    fast_context.__exit__(None, None, None)
    for context in candidates.values():
        context.__exit__(None, None, None)
    for explainer in (lrp_explainer, crp_fast_explainer, crp_zennit_explainer):
        explainer.close()
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n{arch} @ {size}px, {name}")
    for b in (1, batch):
        g_in, g_all = rows[("gradient (input only)", b)], rows[("gradient (+ parameters)", b)]
        for (label, bb), ms in rows.items():
            if bb != b:
                continue
            per = f"{ms:9.1f} ms" if b == 1 else f"{ms / b:9.2f} ms/img"
            print(f"  batch {b:3d}  {label:30s} {per}   x{ms / g_in:4.2f} input-gradient   x{ms / g_all:4.2f} full gradient")
    for b in (1, batch):
        print(f"  batch {b:3d}  LRP fast (prepared) / full gradient, interleaved pairs: x{paired[b]:4.2f}")
        for recipe in compare:
            print(f"  batch {b:3d}  LRP fast (prepared), {recipe} / full gradient, interleaved pairs: "
                  f"x{paired[(recipe, b)]:4.2f}")
    print(f"  heatmap cosine, fast engine vs straightforward zennit: {cosine:.6f}")
    print(f"  CRP fast vs zennit-crp: same channels {same_channels}, min conditional-heatmap cosine {crp_cosine:.6f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["resnet50", "attention_resnet50", "efficientnet_b0_relu"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--concepts", type=int, default=32)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--compare", nargs="*", default=[], help="other LRP recipes timed against the same gradient")
    args = parser.parse_args()
    for arch in args.arch:
        bench(arch, args.size, args.batch, args.iters, torch.device(args.device), args.concepts, tuple(args.compare))


if __name__ == "__main__":
    main()
