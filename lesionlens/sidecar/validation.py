"""Is this run directory the ONNX model's? Checked before the sidecar or the demo starts: the
weights file, model.json and the ONNX metadata must agree on one weights sha256, and on the
architecture and classes. An explanation of another model is worse than none. Torch-free."""

from __future__ import annotations

from pathlib import Path

from .._io import sha256_file
from ..errors import HashMismatchError, MetadataError, RunError, display_path
from ..runtime.metadata import ModelMetadata
from ..training.rundir import RunDir


def onnx_metadata(model_path: Path) -> ModelMetadata:
    """The ONNX model's metadata, checked against its graph (onnx only, no onnxruntime session)."""
    import onnx

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends for a file that is not a model
        raise MetadataError(f"{display_path(model_path)}: not a readable ONNX model ({exc})") from None
    metadata = ModelMetadata.from_props({p.key: p.value for p in model.metadata_props}, display_path(model_path))
    metadata.check_graph([_NodeArg(v) for v in model.graph.input], [_NodeArg(v) for v in model.graph.output],
                         display_path(model_path))
    return metadata


class _NodeArg:
    """An onnx ValueInfo seen as onnxruntime's NodeArg (name, type string, shape)."""

    _TYPES = {1: "tensor(float)", 2: "tensor(uint8)", 10: "tensor(float16)"}

    def __init__(self, value_info):
        tensor = value_info.type.tensor_type
        self.name = value_info.name
        self.type = self._TYPES.get(tensor.elem_type, f"tensor({tensor.elem_type})")
        self.shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in tensor.shape.dim]


def validate_run_for(model_path: Path, run: Path) -> tuple[ModelMetadata, RunDir, str]:
    """(ONNX metadata, run, weights sha256) once the run is shown to be the ONNX model's."""
    model_path, run = Path(model_path), RunDir(run)
    if not model_path.is_file():
        raise RunError(f"{display_path(model_path)}: ONNX model not found")
    metadata = onnx_metadata(model_path)
    meta = run.read_metadata()
    if not run.weights.is_file():
        raise RunError(f"{display_path(run.weights)}: weights not found")
    actual = sha256_file(run.weights)
    if actual != metadata.weights_sha256:
        raise HashMismatchError(
            f"{display_path(run.weights)} has sha256 {actual}, but {display_path(model_path)} was exported from "
            f"weights with sha256 {metadata.weights_sha256}: refusing to explain a different model")
    if meta.weights_sha256 != actual:
        raise RunError(f"{display_path(run.metadata_file)} records weights_sha256 {meta.weights_sha256}, but "
                       f"{display_path(run.weights)} has {actual}: the run was changed after training")
    if meta.arch != metadata.arch or meta.classes != metadata.classes:
        raise RunError(f"{display_path(run.path)} is a {meta.arch} over {meta.classes}, {display_path(model_path)} "
                       f"a {metadata.arch} over {metadata.classes}")
    return metadata, run, actual
