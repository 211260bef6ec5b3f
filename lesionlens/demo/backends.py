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
