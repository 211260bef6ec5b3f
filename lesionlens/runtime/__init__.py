"""Production inference on an exported ONNX model: onnxruntime, numpy, OpenCV, Pillow. Importing
this package never imports torch, timm, zennit or gradio (a test checks it)."""

from .classifier import Classifier, Prediction, ProviderFallbackWarning
from .metadata import FlagPolicy, MetadataError, ModelMetadata

__all__ = ["Classifier", "FlagPolicy", "MetadataError", "ModelMetadata", "Prediction", "ProviderFallbackWarning"]
