"""Explanations: canonizers for timm models, LRP, CRP, Grad-CAM, attention maps, rendering."""

from .api import Explanation, explain, explain_batch
from .canonizers import canonizers_for
from .methods import METHODS, Concept

__all__ = ["Concept", "Explanation", "METHODS", "canonizers_for", "explain", "explain_batch"]
