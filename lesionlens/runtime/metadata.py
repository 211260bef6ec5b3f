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
from ..errors import MetadataError
from ..names import class_list_problem

FORMAT_VERSION = "1"
INPUT_FORMATS = ("float32_nchw", "uint8_nhwc")
REQUIRED_KEYS = ("lesionlens_format", "classes", "preprocessing", "flag_policy", "arch", "weights_sha256")


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
        if not isinstance(data, Mapping):
            raise ValueError("flag_policy must be a JSON object")
        return cls(data.get("positive_class"), data.get("positive_index"), data.get("threshold"),
                   data.get("min_confidence", 0.0))

    def validate(self, classes: list[str]) -> None:
        """ValueError unless the policy fits `classes`: a positive index in range naming the
        positive class, probabilities as numbers in [0, 1]."""
        if (self.positive_index is None) != (self.positive_class is None):
            raise ValueError("flag_policy: positive_class and positive_index must be given together")
        if self.positive_index is not None:
            if not isinstance(self.positive_index, int) or isinstance(self.positive_index, bool) \
                    or not 0 <= self.positive_index < len(classes):
                raise ValueError(f"flag_policy: positive_index {self.positive_index!r} is out of range for "
                                 f"{len(classes)} classes")
            if classes[self.positive_index] != self.positive_class:
                raise ValueError(f"flag_policy: positive_index {self.positive_index} is {classes[self.positive_index]!r}, "
                                 f"not positive_class {self.positive_class!r}")
        for name in ("threshold", "min_confidence"):
            value = getattr(self, name)
            if value is None and name == "threshold":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"flag_policy: {name} must be a number in [0, 1], got {value!r}")

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

    def validate(self) -> None:
        """ValueError unless the metadata is consistent with itself."""
        classes = self.classes
        if (not isinstance(classes, list) or len(classes) < 2 or len(set(classes)) != len(classes)
                or not all(isinstance(c, str) and c for c in classes)):
            raise ValueError(f"classes must list >= 2 distinct names, got {classes!r}")
        problem = class_list_problem(classes)
        if problem:
            raise ValueError(problem)
        self.flag_policy.validate(classes)
        if self.input_format not in INPUT_FORMATS:
            raise ValueError(f"input_format {self.input_format!r} is not one of {INPUT_FORMATS}")

    def check_graph(self, inputs, outputs, source: str = "model") -> None:
        """MetadataError unless the graph matches: one input of the declared format and the
        spec's size, a `probs` output with one column per class. `inputs`/`outputs` are
        onnxruntime NodeArgs (name, type, shape)."""
        def fail(reason: str) -> MetadataError:
            return MetadataError(f"{source}: metadata does not match the graph: {reason}")

        if len(inputs) != 1:
            raise fail(f"expected one input, the graph has {len(inputs)}")
        graph_input, size = inputs[0], self.preprocessing.size
        uint8 = graph_input.type == "tensor(uint8)"
        if uint8 != (self.input_format == "uint8_nhwc"):
            raise fail(f"input is {graph_input.type} but input_format says {self.input_format}")
        shape = list(graph_input.shape)
        spatial = shape[1:3] if uint8 else shape[2:4]
        if len(shape) != 4 or any(isinstance(d, int) and d != size for d in spatial):
            raise fail(f"input shape {shape} does not take {size}x{size} images (preprocessing size)")
        probs = {o.name: o for o in outputs}.get("probs")
        if probs is None:
            raise fail("no 'probs' output")
        width = probs.shape[-1] if probs.shape else None
        if isinstance(width, int) and width != len(self.classes):
            raise fail(f"the graph outputs {width} class probabilities, the metadata names {len(self.classes)} "
                       f"classes {self.classes}")

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
            metadata = cls(
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
            metadata.validate()
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise MetadataError(f"{source}: malformed lesionlens metadata ({exc})") from None
        return metadata
