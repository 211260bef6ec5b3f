"""PyTorch eager against the ONNX runtime, per architecture, same weights and inputs, one process.

    .venv/bin/python benchmarks/runtime.py [--arch resnet50 ...] [--size 224] [--device cpu|cuda]

CPU: latency at batch 1 and throughput at batch 32 for PyTorch eager, ORT with default session
options ("plain"), ORT as `lesionlens.runtime.Classifier` configures it ("tuned") and the int8
variant (calibrated on synthetic images; its agreement with fp32 is printed too). Ratios are
ORT time / PyTorch time (lower is better).

CUDA (batch 1 and 256): PyTorch eager fp16 channels-last against the Classifier on the fp16
uint8-input model with the CUDA provider, end to end from a uint8 host batch to probabilities
(the host-to-device copy included), and TensorRT when its libraries load.
Random weights (their values do not change the speed). Medians of --iters runs after warm-up.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from timing import median_ms

from lesionlens.data.preprocess import PreprocessSpec, normalize


def export_variants(arch: str, size: int, folder: Path, int8: bool, fp16: bool) -> tuple[torch.nn.Module, Path]:
    from lesionlens.data.synth import generate
    from lesionlens.export import ExportOptions, export_run
    from lesionlens.training import load_run
    from lesionlens.training.rundir import random_run

    run = random_run(folder / "run", arch, size=size)
    data = folder / "calib"
    generate(data, n=32, size=size, seed=0, progress=False)
    export_run(run, folder / "onnx", ExportOptions(int8=int8, fp16=fp16, uint8_input=fp16, data=data, max_images=32))
    model, _ = load_run(run)
    return model, folder / "onnx"


def cpu_bench(arch: str, size: int, iters: int) -> None:
    import onnxruntime as ort

    from lesionlens.runtime import Classifier

    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        model, onnx_dir = export_variants(arch, size, Path(tmp), int8=True, fp16=False)
        spec = PreprocessSpec(size=size)
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 256, (32, size, size, 3), dtype=np.uint8)
        x32 = np.stack([normalize(p, spec) for p in pixels])
        plain = ort.InferenceSession(str(onnx_dir / "model.onnx"), providers=["CPUExecutionProvider"])
        tuned = Classifier(onnx_dir / "model.onnx", providers="cpu")
        int8 = Classifier(onnx_dir / "model.int8.onnx", providers="cpu")
        rows = {}
        with torch.inference_mode():
            for batch in (1, 32):
                xb, tb = x32[:batch], torch.from_numpy(x32[:batch])
                n = iters if batch == 1 else max(3, iters // 4)
                rows[("pytorch eager", batch)] = median_ms(lambda: model(tb), n)
                rows[("ort plain", batch)] = median_ms(lambda: plain.run(["probs"], {"image": xb}), n)
                rows[("ort tuned (Classifier)", batch)] = median_ms(lambda: tuned.run(xb), n)
                rows[("ort int8 (Classifier)", batch)] = median_ms(lambda: int8.run(xb), n)
        agree = (tuned.run(x32)[1].argmax(1) == int8.run(x32)[1].argmax(1)).mean()
    print(f"\n{arch} @ {size}px, CPU, torch threads {torch.get_num_threads()}")
    for batch in (1, 32):
        base = rows[("pytorch eager", batch)]
        for name in ("pytorch eager", "ort plain", "ort tuned (Classifier)", "ort int8 (Classifier)"):
            ms = rows[(name, batch)]
            speed = f"{ms:8.1f} ms" if batch == 1 else f"{batch / ms * 1000:8.1f} img/s"
            print(f"  batch {batch:3d}  {name:24s} {speed}   ratio to pytorch {ms / base:.2f}")
    print(f"  int8 vs fp32 top-1 agreement on random pixels: {agree:.3f}")


def cuda_bench(arch: str, size: int, iters: int) -> None:
    from lesionlens.runtime import Classifier

    device = torch.device("cuda")
    sync = torch.cuda.synchronize
    with tempfile.TemporaryDirectory() as tmp:
        model, onnx_dir = export_variants(arch, size, Path(tmp), int8=False, fp16=True)
        model = model.to(device).half().to(memory_format=torch.channels_last)
        mean = torch.tensor(PreprocessSpec().mean, device=device).view(1, 3, 1, 1) * 255
        std = torch.tensor(PreprocessSpec().std, device=device).view(1, 3, 1, 1) * 255
        rng = np.random.default_rng(0)
        results = {}
        classifiers = {"ort cuda fp16 uint8 (Classifier)": Classifier(onnx_dir / "model.uint8.fp16.onnx", providers="cuda")}
        trt = Classifier(onnx_dir / "model.uint8.onnx", providers="tensorrt")
        if trt.provider == "TensorrtExecutionProvider":
            classifiers["ort tensorrt fp16 (Classifier)"] = trt
        for batch in (1, 256):
            host = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
            pinned = torch.from_numpy(host).pin_memory()

            @torch.inference_mode()
            def torch_end_to_end():
                x = pinned.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
                x = ((x - mean) / std).half().contiguous(memory_format=torch.channels_last)
                return torch.softmax(model(x).float(), 1).cpu()

            results[("pytorch eager fp16 channels-last", batch)] = median_ms(torch_end_to_end, iters, sync)
            for name, clf in classifiers.items():
                results[(name, batch)] = median_ms(lambda: clf.run(host), iters, sync)
    print(f"\n{arch} @ {size}px, {torch.cuda.get_device_name()} (end to end: uint8 host batch -> probs on host)")
    for batch in (1, 256):
        base = results[("pytorch eager fp16 channels-last", batch)]
        for (name, b), ms in results.items():
            if b == batch:
                print(f"  batch {batch:3d}  {name:36s} {ms:8.2f} ms  {batch / ms * 1000:9.0f} img/s   ratio {ms / base:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["resnet50", "attention_resnet50", "efficientnet_b0_relu"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--iters", type=int, default=20)
    args = parser.parse_args()
    for arch in args.arch:
        (cuda_bench if args.device == "cuda" else cpu_bench)(arch, args.size, args.iters)


if __name__ == "__main__":
    main()
