"""Model factory, architecture specs, training loop, metrics, checkpoints, the run directory.

Attributes load lazily so `import lesionlens.training` costs nothing until a model is needed.
"""

_LAZY = {
    "ArchitectureSpec": ".architectures",
    "TrainingRecipe": ".architectures",
    "architectures": ".architectures",
    "get_spec": ".architectures",
    "register": ".architectures",
    "create_model": ".models",
    "spec_of_model": ".models",
    "RunDir": ".rundir",
    "RunMetadata": ".rundir",
    "load_run": ".rundir",
    "train": ".fit",
    "TrainConfig": ".config",
    "evaluate": ".evaluate",
}

__all__ = ["ARCHITECTURES", *_LAZY]


def __getattr__(name: str):
    import importlib

    if name == "ARCHITECTURES":  # the registered architectures, at the time of asking
        return tuple(importlib.import_module(".architectures", __name__).architectures())
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(name)
