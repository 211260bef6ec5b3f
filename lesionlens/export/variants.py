"""Derived ONNX variants: fp16 (for GPUs) and int8 (static quantisation, for CPUs).

Both use onnxruntime's own tools (its bundled float16 converter and onnxruntime.quantization),
applied to the validated fp32 graph, and are validated again afterwards.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.preprocess import PreprocessSpec, normalize


def convert_fp16(src: Path, dst: Path) -> Path:
    """Weights and activations in fp16; the graph's inputs and outputs stay float32 (or uint8),
    so callers do not change. Softmax runs in fp32 (kept out of the conversion) for probs that
    still sum to 1."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=["Softmax"])
    topological_sort(converted.graph)
    onnx.save(converted, str(dst))
    return dst


def topological_sort(graph) -> None:
    """Reorder graph.node so every node follows its producers. The float16 converter appends
    the input casts at the end; onnxruntime accepts that, the ONNX checker (rightly) does not."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            raise ValueError("graph has a cycle or an input nobody produces")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)


class _CalibrationReader:
    """Feeds preprocessed real images to the int8 calibrator, a few at a time."""

    def __init__(self, input_name: str, pixels: np.ndarray, spec: PreprocessSpec, uint8: bool, batch: int = 8):
        self.batches = []
        for start in range(0, len(pixels), batch):
            chunk = pixels[start : start + batch]
            feed = chunk if uint8 else np.stack([normalize(p, spec) for p in chunk])
            self.batches.append({input_name: feed})
        self._iter = iter(self.batches)

    def get_next(self):
        return next(self._iter, None)

    def rewind(self):
        self._iter = iter(self.batches)


def quantize_int8(src: Path, dst: Path, calibration_pixels: np.ndarray, spec: PreprocessSpec) -> Path:
    """Static int8 quantisation (QDQ, per-channel weights, uint8 activations), calibrated on
    real images: on CPUs with VNNI the integer kernels are several times faster than fp32.

    Only convolutions are quantised: they are nearly all the compute, while the heads (the
    attention pooling's tanh/sigmoid/softmax gate above all) lose their small logit differences
    to 8 bits; quantising the attention head flipped every prediction of a random-weight model."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration_pixels) == 0:
        raise ValueError("int8 quantisation needs real calibration images (none were found)")
    prepared = dst.with_name(dst.stem + ".prep.onnx")
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    graph_input = onnx.load(str(prepared)).graph.input[0]
    uint8 = graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    reader = _CalibrationReader(graph_input.name, calibration_pixels, spec, uint8)
    try:
        quantize_static(
            str(prepared), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=["Conv"],
        )
    finally:
        prepared.unlink(missing_ok=True)
    return dst
