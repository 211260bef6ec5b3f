"""Images in, arrays out. Nothing here imports torch: the runtime depends on decode + preprocess."""

from .decode import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image
from .preprocess import PreprocessSpec, normalize, preprocess, resize_to_spec
from .readers import (
    DatasetError,
    LabeledImages,
    Sample,
    default_positive_class,
    read_csv,
    read_dataset,
    read_folder,
    restrict_to_classes,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DatasetError",
    "ImageDecodeError",
    "LabeledImages",
    "PreprocessSpec",
    "Sample",
    "decode_image",
    "default_positive_class",
    "normalize",
    "preprocess",
    "read_csv",
    "read_dataset",
    "read_folder",
    "resize_to_spec",
    "restrict_to_classes",
]
