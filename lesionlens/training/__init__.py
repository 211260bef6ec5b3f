"""Model factory, training loop, metrics, checkpoints.

Attributes load lazily so `import lesionlens.training` costs nothing until a model is needed.
"""

from .names import ARCHITECTURES

_LAZY = {
    "create_model": ".models",
    "architectures": ".models",
    "load_run": ".rundir",
    "read_metadata": ".rundir",
    "train": ".fit",
    "TrainConfig": ".trainer",
    "evaluate": ".evaluate",
}

__all__ = ["ARCHITECTURES", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(name)
