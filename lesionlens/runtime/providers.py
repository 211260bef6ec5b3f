"""Which ONNX Runtime execution providers to ask for, and with which options.

onnxruntime-gpu lists TensorRT and CUDA as "available" even on a machine without a GPU; asking
for them there makes ORT print loader errors and fall back. So we look for the driver and the
TensorRT library first, ask only for what can load, and say clearly when a provider the user
requested explicitly could not be used.
"""

from __future__ import annotations

import ctypes
import os
from functools import lru_cache
from pathlib import Path
from typing import Optional

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
CHOICES = ("auto", "tensorrt", "cuda", "cpu")


@lru_cache(maxsize=None)
def _loads(*names: str) -> bool:
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def cuda_usable() -> bool:
    return _loads("libcuda.so.1", "nvcuda.dll")


def tensorrt_usable() -> bool:
    return cuda_usable() and _loads("libnvinfer.so.10", "libnvinfer.so.8", "nvinfer_10.dll")


def provider_list(requested: str, cache_dir: Optional[Path] = None) -> tuple[list, list[str]]:
    """(providers for InferenceSession, warnings). TensorRT runs fp16 with an engine cache, so
    the minutes-long engine build happens once per model and machine."""
    import onnxruntime as ort

    if requested not in CHOICES:
        raise ValueError(f"unknown provider {requested!r}; use one of {CHOICES}")
    available = set(ort.get_available_providers())
    notes: list[str] = []
    cache = str(cache_dir or Path(os.environ.get("LESIONLENS_TRT_CACHE", Path.home() / ".cache" / "lesionlens" / "trt")))
    trt = (TENSORRT, {"trt_fp16_enable": "1", "trt_engine_cache_enable": "1", "trt_engine_cache_path": cache,
                      "trt_timing_cache_enable": "1", "trt_timing_cache_path": cache})
    # prefer_nhwc: ~2x faster fp16 convolutions at batch 1 on an H100 (see benchmarks/RESULTS.md)
    cuda = (CUDA, {"prefer_nhwc": "1", "cudnn_conv_algo_search": "HEURISTIC"})
    chosen: list = []
    if requested in ("auto", "tensorrt"):
        if TENSORRT in available and tensorrt_usable():
            os.makedirs(cache, exist_ok=True)
            chosen.append(trt)
        elif requested == "tensorrt":
            notes.append("TensorRT requested but its libraries (libnvinfer) or the CUDA driver were not found")
    if requested in ("auto", "tensorrt", "cuda"):
        if CUDA in available and cuda_usable():
            chosen.append(cuda)
        elif requested != "auto":
            notes.append("CUDA requested but no CUDA driver (libcuda) was found" if CUDA in available
                         else "CUDA requested but this onnxruntime build has no CUDA provider")
    chosen.append(CPU)
    return chosen, notes
