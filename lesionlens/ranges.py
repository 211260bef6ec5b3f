"""The allowed range of every numeric argument, stated once and checked where the argument is
parsed: by argparse for the CLI (`Bounds.parse` as an argument type), by the options'
dataclasses for the Python API (`Bounds.check`). A value out of range is a usage error that
names the argument and the range, before any work starts. Torch-free."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Optional

from .errors import UsageError


@dataclass(frozen=True)
class Bounds:
    low: Optional[float] = None
    high: Optional[float] = None
    whole: bool = False  # a whole number (int), else a finite float
    low_open: bool = False  # low itself excluded
    high_open: bool = False

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a finite number"
        low, high = _fmt(self.low), _fmt(self.high)
        if self.low is not None and self.high is not None:
            if not self.low_open and not self.high_open:
                return f"{kind} from {low} to {high}"
            return f"{kind} {'>' if self.low_open else '>='} {low} and {'<' if self.high_open else '<='} {high}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {low}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {high}"
        return kind

    def problem(self, value: object) -> Optional[str]:
        """Why `value` is out of range (or of the wrong kind), or None."""
        ok_type = isinstance(value, int) if self.whole else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or not math.isfinite(value):
            return f"must be {self.describe()}, got {value!r}"
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"must be {self.describe()}, got {value!r}"
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return f"must be {self.describe()}, got {value!r}"
        return None

    def check(self, name: str, value, error=UsageError):
        problem = self.problem(value)
        if problem:
            raise error(f"{name} {problem}")
        return value

    def parse(self, text: str):
        """An argparse `type=`: the parsed value, or argparse's own usage error (exit 2)."""
        try:
            value = int(text) if self.whole else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {self.describe()}, got {text!r}") from None
        problem = self.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value


def _fmt(value: Optional[float]) -> str:
    return "" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))


COUNT = Bounds(1, whole=True)  # how many images, epochs, patience...
BATCH = Bounds(1, 4096, whole=True)
SEED = Bounds(0, 2**32 - 1, whole=True)
PROBABILITY = Bounds(0.0, 1.0)
PORT = Bounds(1, 65535, whole=True)
CONCEPTS = Bounds(1, 64, whole=True)  # what a person can look at; the sidecar refuses more too
# 13: per-channel int8 (QDQ) and Softmax over one axis; 20: torch's TorchScript exporter's last
OPSET = Bounds(13, 20, whole=True)
IMAGE_SIZE = Bounds(32, 4096, whole=True)  # five stride-2 stages need >= 32 px

# TrainConfig's fields (the CLI's --flag spelling in messages). BatchNorm needs >= 2 images
# per batch in training mode.
TRAIN = {
    "epochs": Bounds(1, 10_000, whole=True),
    "image_size": IMAGE_SIZE,
    "batch_size": Bounds(2, 4096, whole=True),
    "lr": Bounds(0.0, 10.0, low_open=True),
    "weight_decay": Bounds(0.0, 10.0),
    "warmup_epochs": Bounds(0.0, 10_000.0),
    "seed": SEED,
    "target_sensitivity": Bounds(0.0, 1.0, low_open=True),
    "val_fraction": Bounds(0.0, 1.0, low_open=True, high_open=True),
    "test_fraction": Bounds(0.0, 1.0, high_open=True),
    "patience": COUNT,
    "workers": Bounds(-1, 64, whole=True),
}


def flag(field: str) -> str:
    """A dataclass field as the CLI spells it: image_size -> --image-size."""
    return "--" + field.replace("_", "-")
