"""Explanations: canonizers for timm models, LRP, CRP, Grad-CAM, attention maps, rendering, the
concept atlas, explain-eval. Attributes load lazily (as in `lesionlens.training`): importing
`lesionlens.explain` does not pull in torch and zennit until an explanation needs them. The
HTTP sidecar is a package of its own (`lesionlens.sidecar`) over this one."""

_LAZY = {
    "Explainer": ".explainer",
    "Explanation": ".api",
    "explain": ".api",
    "explain_batch": ".api",
    "Concept": ".methods",
    "METHODS": ".methods",
    "canonizers_for": ".canonizers",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(name)
