"""lesionlens: an explainable skin-lesion classifier (train, explain, export, serve)."""

__version__ = "0.1.0"
