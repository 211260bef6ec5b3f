"""Where the demo's explanations come from: the in-process ExplanationService (default), or a
running `lesionlens serve` (the production shape: the demo process then holds no torch). Both
answer with the sidecar's JSON (overlay_png_base64, concepts with their own overlays...)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import LesionlensError, RequestError


class ExplanationUnavailable(LesionlensError, RuntimeError):
    """The explanation engine could not answer (sidecar down, model failed to load)."""


class InProcessExplanations:
    def __init__(self, model: Path, run: Path, device: str = "auto"):
        from ..sidecar.service import ExplanationService

        self.service = ExplanationService(model, run, device=device)
        self.methods = list(self.service.methods)

    def explain(self, data: bytes, method: str, concepts: int, target: Optional[str] = None) -> dict:
        from ..sidecar.service import ServiceUnavailable

        try:
            return self.service.explain(data, method, target, concepts)
        except ServiceUnavailable as exc:
            raise ExplanationUnavailable(str(exc)) from None


class SidecarExplanations:
    """A `lesionlens serve` at `url` (its bearer token, if it has one)."""

    def __init__(self, url: str, token: Optional[str] = None, timeout: float = 600):
        import httpx

        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(headers=headers, timeout=timeout)
        try:
            health = self.client.get(f"{self.url}/health").json()
        except Exception as exc:  # connection refused, DNS, not JSON: one readable line
            raise ExplanationUnavailable(f"sidecar {self.url} did not answer /health: {exc}") from None
        self.methods = list(health.get("methods", []))
        self.weights_sha256 = health.get("weights_sha256")

    def explain(self, data: bytes, method: str, concepts: int, target: Optional[str] = None) -> dict:
        import httpx

        try:
            response = self.client.post(f"{self.url}/explain", files={"image": ("upload", data)},
                                        data={"method": method, "concepts": str(concepts),
                                              **({"target": target} if target is not None else {}),
                                              **({"expected_sha256": self.weights_sha256} if self.weights_sha256 else {})})
        except httpx.HTTPError as exc:
            raise ExplanationUnavailable(f"sidecar {self.url}: {exc}") from None
        if response.status_code == 400:
            raise RequestError(response.json().get("detail", "bad request"))
        if response.status_code != 200:
            detail = response.json().get("detail") if response.headers.get("content-type", "").startswith(
                "application/json") else response.text[:200]
            raise ExplanationUnavailable(f"sidecar {self.url} answered {response.status_code}: {detail}")
        return response.json()


class RevisedComparison:
    """`demo --revised RUN2`: the original run and its revision (`lesionlens revise`) explained
    on the same upload, LRP for the flag's class, side by side, with each model's probability.
    In-process (torch): a comparison view for reviewers, not the production path."""

    def __init__(self, original: Path, revised: Path):
        from ..errors import UsageError
        from ..training.rundir import load_run

        self.original, self.original_meta = load_run(original)
        self.revised, self.revised_meta = load_run(revised)
        parent = (self.revised_meta.revision or {}).get("parent", {})
        if parent.get("weights_sha256") != self.original_meta.weights_sha256:
            raise UsageError(f"--revised {revised}: not a revision of {original} (its model.json names another "
                             "parent, or none)")
        self.method = self.revised_meta.revision["method"]

    def compare(self, data: bytes) -> tuple:
        """(figure: original | revised, markdown lines with both probabilities)."""
        import numpy as np

        from ..data.decode import decode_image
        from ..data.preprocess import preprocess, resize_to_spec
        from ..escape import md_text
        from ..explain.api import explain
        from ..explain.files import figure_for

        panels, lines = [], []
        for name, model, meta in (("original", self.original, self.original_meta),
                                  (f"revised ({self.method})", self.revised, self.revised_meta)):
            rgb = decode_image(data, reduce_to=meta.preprocessing.size)
            x = preprocess(rgb, meta.preprocessing)
            target = meta.positive_index
            explanation = explain(model, x, target, "lrp", meta.classes)
            panel = figure_for(explanation, resize_to_spec(rgb, meta.preprocessing))
            panels.append(panel)
            label = meta.positive_class or explanation.target_label
            p = explanation.prediction["probabilities"].get(label)
            flagged = (meta.decision_threshold is not None and p is not None and p >= meta.decision_threshold)
            lines.append(f"**{name}**: P({md_text(label)}) = {p:.3f}" + (
                f", {'flagged' if flagged else 'not flagged'} at >= {meta.decision_threshold:.3f}"
                if meta.decision_threshold is not None else ""))
        height = max(p.shape[0] for p in panels)
        panels = [np.pad(p, ((0, height - p.shape[0]), (0, 8), (0, 0)), constant_values=255) for p in panels]
        return np.concatenate(panels, 1), lines
