"""What an exported ONNX model carries in `metadata_props`, so a consumer needs nothing else:
class names, preprocessing spec, flagging policy, arch, weights hash, versions, opset.

Written by `lesionlens.export`, read by the runtime and the sidecar. Plain strings (JSON where
structured), readable with `onnx` (`model.metadata_props`) or `onnxruntime`
(`session.get_modelmeta().custom_metadata_map`). No torch here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np

from ..data.preprocess import PreprocessSpec

FORMAT_VERSION = "1"
REQUIRED_KEYS = ("lesionlens_format", "classes", "preprocessing", "flag_policy", "arch", "weights_sha256")


class MetadataError(ValueError):
    """An ONNX model lacks the lesionlens metadata (not exported by `lesionlens export`?)."""


@dataclass(frozen=True)
class FlagPolicy:
    """Which predictions a clinician (and the explanation sidecar) should look at.

    flagged = p(positive_class) >= threshold          reason "positive"
           or max class probability < min_confidence  reason "uncertain"
    With no positive class (an N-class model without a melanoma-like class) only the
    uncertainty rule applies. min_confidence 0 turns that rule off.
    """

    positive_class: Optional[str]
    positive_index: Optional[int]
    threshold: Optional[float]
    min_confidence: float = 0.0

    def to_dict(self) -> dict:
        return {
            "positive_class": self.positive_class,
            "positive_index": self.positive_index,
            "threshold": self.threshold,
            "min_confidence": self.min_confidence,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "FlagPolicy":
        return cls(data.get("positive_class"), data.get("positive_index"), data.get("threshold"),
                   float(data.get("min_confidence", 0.0)))

    def reasons(self, probs: np.ndarray) -> list[str]:
        """Per row of probs (N, K): "" (not flagged), "positive", "uncertain" or both."""
        out = []
        for row in np.atleast_2d(probs):
            why = []
            if self.positive_index is not None and self.threshold is not None and row[self.positive_index] >= self.threshold:
                why.append("positive")
            if self.min_confidence > 0 and row.max() < self.min_confidence:
                why.append("uncertain")
            out.append("+".join(why))
        return out


@dataclass(frozen=True)
class ModelMetadata:
    classes: list[str]
    preprocessing: PreprocessSpec
    flag_policy: FlagPolicy
    arch: str
    weights_sha256: str
    input_format: str = "float32_nchw"  # or "uint8_nhwc": resized pixels, normalised in the graph
    precision: str = "fp32"
    versions: dict = field(default_factory=dict)
    opset: Optional[int] = None
    extra: dict = field(default_factory=dict)

    def to_props(self) -> dict[str, str]:
        props = {
            "lesionlens_format": FORMAT_VERSION,
            "classes": json.dumps(self.classes),
            "preprocessing": self.preprocessing.to_json(),
            "flag_policy": json.dumps(self.flag_policy.to_dict()),
            "decision_threshold": json.dumps(self.flag_policy.threshold),
            "arch": self.arch,
            "weights_sha256": self.weights_sha256,
            "input_format": self.input_format,
            "precision": self.precision,
            "versions": json.dumps(self.versions, sort_keys=True),
            "opset": str(self.opset) if self.opset is not None else "",
        }
        props.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in self.extra.items()})
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> "ModelMetadata":
        missing = [k for k in REQUIRED_KEYS if k not in props]
        if missing:
            raise MetadataError(f"{source}: missing lesionlens metadata {missing}; export it with `lesionlens export`")
        known = set(REQUIRED_KEYS) | {"decision_threshold", "input_format", "precision", "versions", "opset"}
        try:
            return cls(
                classes=json.loads(props["classes"]),
                preprocessing=PreprocessSpec.from_json(props["preprocessing"]),
                flag_policy=FlagPolicy.from_dict(json.loads(props["flag_policy"])),
                arch=props["arch"],
                weights_sha256=props["weights_sha256"],
                input_format=props.get("input_format", "float32_nchw"),
                precision=props.get("precision", "fp32"),
                versions=json.loads(props.get("versions") or "{}"),
                opset=int(props["opset"]) if props.get("opset") else None,
                extra={k: v for k, v in props.items() if k not in known},
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise MetadataError(f"{source}: malformed lesionlens metadata ({exc})") from None
