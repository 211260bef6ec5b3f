"""The explanation sidecar: a deployment unit of its own, over `explain` and `runtime`.

Production classifies with the ONNX model; the sidecar explains the flagged cases with the
PyTorch weights of the same model (checked by hash), in batches, with the weights loaded on
the first request.

    validation.py  the run directory against the ONNX model (one weights hash, arch, classes)
    service.py     ExplanationService: bounded decoding, lazy weights, one batching worker
    answers.py     an explanation as the JSON answer (numbers + PNG figures, base64)
    guards.py      HTTP guards: Host, bearer token, body limit, header timeout
    server.py      the FastAPI app and `lesionlens serve`

Only the CLI and the demo (its in-process mode) import this package. Importing it loads no
torch: that happens on the first explanation.
"""

_LAZY = {
    "ExplanationService": ".service",
    "ServiceUnavailable": ".service",
    "validate_run_for": ".validation",
    "create_app": ".server",
    "serve": ".server",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(name)
