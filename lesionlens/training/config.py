"""`TrainConfig`: what `lesionlens train` takes. Torch-free, so the CLI derives its argparse
defaults from here (one place for every default) without loading torch."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Optional

from ..errors import UsageError


@dataclass
class TrainConfig:
    """Everything `lesionlens train` takes. The CLI's defaults come from here; the recipe fields
    (epochs ... warmup_epochs) default to None, meaning "the architecture's recipe" (its spec),
    and are filled in by `with_recipe()` before training."""

    data: Optional[str]
    arch: Optional[str]
    out: str
    epochs: Optional[int] = None
    image_size: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    weight_decay: Optional[float] = None
    warmup_epochs: Optional[float] = None
    seed: int = 0
    device: str = "auto"
    pretrained: Optional[str] = None
    resume: bool = False
    target_sensitivity: float = 0.9
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    patience: int = 5
    workers: int = -1  # -1: none on a <= 2-core CPU machine (images cached), else up to 8
    image_root: Optional[str] = None
    positive_class: Optional[str] = None
    balance: str = "weights"  # "weights": inverse-frequency class weights in the loss; "none"
    progress: bool = True

    def __post_init__(self) -> None:
        """Every numeric field in its range (lesionlens.ranges.TRAIN), before any work starts:
        `--epochs 0` or `--lr nan` is a usage error naming the flag, not a failure later."""
        from ..ranges import TRAIN, flag

        for name, bounds in TRAIN.items():
            value = getattr(self, name)
            if value is not None:
                bounds.check(flag(name), value)
        if self.val_fraction + self.test_fraction >= 1:
            raise UsageError(f"--val-fraction {self.val_fraction} and --test-fraction {self.test_fraction} leave "
                             "nothing to train on (their sum must be < 1)")

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def default(cls, name: str):
        """The default of one field (the CLI's argparse defaults use this)."""
        return next(f.default for f in fields(cls) if f.name == name)

    def with_recipe(self) -> "TrainConfig":
        """A copy with every recipe field the user left unset taken from the arch's spec."""
        from .architectures import TrainingRecipe, get_spec

        recipe = get_spec(self.arch).recipe
        filled = {name: getattr(recipe, name) for name in TrainingRecipe.names() if getattr(self, name) is None}
        return replace(self, **filled)
