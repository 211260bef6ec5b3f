"""`lesionlens serve`: the explanation sidecar over HTTP (FastAPI).

    POST /explain   multipart: image (file), method, target, concepts, expected_sha256 (optional)
    GET  /health    status, weights_loaded, device, cold start, model hash, load error

Every failure a client can cause is a 4xx with a message (409 when `expected_sha256` names other
weights, 413 for an upload over the limit, refused from Content-Length before the body is read
or as soon as a chunked body passes it); 503 when the model could not be loaded. Hardening:
requests must name an allowed Host (DNS rebinding), a bearer token is required when one is set
(and one must be set to bind beyond loopback), /docs and /openapi.json are off unless asked for.
(No `from __future__ import annotations` here: FastAPI resolves the endpoint annotations.)
"""

import hmac
import ipaddress
import json
import os
from typing import Optional, Sequence

from ..errors import HashMismatchError, RequestError, UsageError
from .service import ExplanationService, ServiceUnavailable

TOKEN_ENV = "LESIONLENS_SIDECAR_TOKEN"
MULTIPART_OVERHEAD = 64 * 1024  # form fields and boundaries around the image


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts_for(host: str, extra: Sequence[str] = ()) -> list[str]:
    hosts = ["localhost", "127.0.0.1", "::1", "[::1]", *extra]
    if host not in ("0.0.0.0", "::") and host not in hosts:
        hosts.append(host)
    return hosts


class BodyLimit:
    """ASGI middleware: 413 before reading a body whose Content-Length is over the limit, and
    as soon as a body without one (chunked) passes it; nothing past the limit is spooled. The
    chunked case raises Starlette's HTTPException from `receive`, which FastAPI passes through
    its body parsing (any other exception there would become a 400)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    def message(self) -> str:
        return f"upload exceeds the limit of {self.limit} bytes"

    async def __call__(self, scope, receive, send):
        from starlette.exceptions import HTTPException

        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            body = json.dumps({"detail": self.message()}).encode()
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
            return await send({"type": "http.response.body", "body": body})
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, self.message())
            return message

        await self.app(scope, limited_receive, send)


def create_app(service: ExplanationService, token: Optional[str] = None,
               allowed_hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1", "[::1]"), docs: bool = False):
    from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
    from fastapi.concurrency import run_in_threadpool
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    def check_token(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="lesionlens explanation sidecar", version="1", dependencies=[Depends(check_token)],
                  docs_url="/docs" if docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if docs else None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.add_middleware(BodyLimit, limit=service.max_upload_bytes + MULTIPART_OVERHEAD)

    @app.get("/health")
    def health() -> dict:
        return service.health()

    @app.post("/explain")
    async def explain(image: UploadFile = File(...), method: str = Form("lrp"), target: Optional[str] = Form(None),
                      concepts: int = Form(8), expected_sha256: Optional[str] = Form(None)) -> dict:
        name = image.filename or "upload"
        data = await image.read(service.max_upload_bytes + 1)
        if len(data) > service.max_upload_bytes:
            raise HTTPException(413, f"{name}: upload exceeds the limit of {service.max_upload_bytes} bytes")
        try:
            result = await run_in_threadpool(service.explain, data, method, target, concepts,
                                             expected_sha256=expected_sha256)
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
    uvicorn.run(app, host=host, port=port, log_level="info")
