"""`lesionlens serve`: the explanation sidecar over HTTP (FastAPI).

    POST /explain   multipart: image (file), method, target, concepts, concept_choice, expected_sha256
                    (all but the image optional)
    GET  /health    status, weights_loaded, device, cold start, model hash, load error

Every failure a client can cause is a 4xx with a message (409 when `expected_sha256` names other
weights, 413 for an upload over the limit, refused from Content-Length before the body is read
or as soon as a chunked body passes it); 503 when the model could not be loaded. The guards
(guards.py) run before any of that, cheapest first: the Host header, the bearer token (checked
before the body is read; one must be set to bind beyond loopback), the body limit, and a
header timeout. /docs and /openapi.json are off unless asked for.
(No `from __future__ import annotations` here: FastAPI resolves the endpoint annotations.)
"""

import os
from typing import Optional, Sequence

from ..errors import HashMismatchError, RequestError, UsageError
from .guards import BearerToken, BodyLimit, HeaderTimeoutProtocol, allowed_hosts_for, is_loopback
from .service import ExplanationService, ServiceUnavailable

TOKEN_ENV = "LESIONLENS_SIDECAR_TOKEN"
MULTIPART_OVERHEAD = 64 * 1024  # form fields and boundaries around the image


def create_app(service: ExplanationService, token: Optional[str] = None,
               allowed_hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1", "[::1]"), docs: bool = False):
    from fastapi import FastAPI, File, Form, HTTPException, UploadFile
    from fastapi.concurrency import run_in_threadpool
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    app = FastAPI(title="lesionlens explanation sidecar", version="1",
                  docs_url="/docs" if docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if docs else None)
    # the last added runs first: Host, then the token, then the body limit
    app.add_middleware(BodyLimit, limit=service.max_upload_bytes + MULTIPART_OVERHEAD)
    app.add_middleware(BearerToken, token=token)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))

    @app.get("/health")
    def health() -> dict:
        return service.health()

    @app.post("/explain")
    async def explain(image: UploadFile = File(...), method: str = Form("lrp"), target: Optional[str] = Form(None),
                      concepts: int = Form(8), concept_choice: Optional[str] = Form(None),
                      expected_sha256: Optional[str] = Form(None)) -> dict:
        name = image.filename or "upload"
        data = await image.read(service.max_upload_bytes + 1)
        if len(data) > service.max_upload_bytes:
            raise HTTPException(413, f"{name}: upload exceeds the limit of {service.max_upload_bytes} bytes")
        try:
            result = await run_in_threadpool(service.explain, data, method, target, concepts,
                                             expected_sha256=expected_sha256, concept_choice=concept_choice)
        except RequestError as exc:
            raise HTTPException(400, f"{name}: {exc}") from None
        except HashMismatchError as exc:
            raise HTTPException(409, str(exc)) from None
        except ServiceUnavailable as exc:
            raise HTTPException(503, str(exc)) from None
        result["filename"] = name
        return result

    return app


def serve(model: str, run: str, host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          token: Optional[str] = None, allowed_hosts: Sequence[str] = (), docs: bool = False) -> None:
    import uvicorn

    token = token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host) and not token:
        raise UsageError(f"binding to {host} exposes the sidecar beyond this machine: set a bearer token "
                         f"with --token or {TOKEN_ENV}")
    service = ExplanationService(model, run, device=device)
    app = create_app(service, token, allowed_hosts_for(host, allowed_hosts), docs)
    uvicorn.run(app, host=host, port=port, log_level="info", http=HeaderTimeoutProtocol)
