"""A Triton Inference Server model repository for an exported model: how users outgrow one
machine (Triton serves the ONNX model across GPUs and hosts, batching requests dynamically).

    REPO/lesionlens/config.pbtxt
    REPO/lesionlens/1/model.onnx
"""

from __future__ import annotations

import shutil
from pathlib import Path

_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(uint8)": "TYPE_UINT8", "tensor(float16)": "TYPE_FP16"}


def _dims(shape) -> list[int]:
    # Triton's dims exclude the batch dimension when max_batch_size > 0.
    return [int(d) for d in shape[1:]]


def config_text(model_path: Path, name: str = "lesionlens", max_batch_size: int = 256,
                instances: int = 1, kind: str = "KIND_GPU") -> str:
    from ..export.validate import session_cpu

    session = session_cpu(model_path)
    blocks = []
    for section, tensors in (("input", session.get_inputs()), ("output", session.get_outputs())):
        entries = []
        for t in tensors:
            if t.type not in _TYPES:
                raise ValueError(f"{model_path}: tensor {t.name} has type {t.type}, unsupported by this writer")
            dims = ", ".join(str(d) for d in _dims(t.shape))
            entries.append(f'  {{\n    name: "{t.name}"\n    data_type: {_TYPES[t.type]}\n    dims: [ {dims} ]\n  }}')
        blocks.append(f"{section} [\n" + ",\n".join(entries) + "\n]")
    preferred = ", ".join(str(b) for b in (8, 32, 64) if b <= max_batch_size)
    return (
        f'name: "{name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {max_batch_size}\n"
        + "\n".join(blocks) + "\n"
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {preferred} ]\n"
        "  max_queue_delay_microseconds: 500\n"
        "}\n"
        f"instance_group [\n  {{\n    count: {instances}\n    kind: {kind}\n  }}\n]\n"
    )


def write_triton_repo(model_path: Path, repo: Path, name: str = "lesionlens", max_batch_size: int = 256) -> Path:
    folder = Path(repo) / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_path, folder / "1" / "model.onnx")
    (folder / "config.pbtxt").write_text(config_text(model_path, name, max_batch_size))
    return folder / "config.pbtxt"
