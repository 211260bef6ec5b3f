"""ONNX export with validation, fp16 / uint8 / int8 variants, Triton model repository."""

from .exporter import ExportError, ExportOptions, export_run

__all__ = ["ExportError", "ExportOptions", "export_run"]
