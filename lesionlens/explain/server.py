"""`lesionlens serve`: the explanation sidecar over HTTP (FastAPI).

    POST /explain   multipart: image (file), method, target (optional), concepts (optional)
    GET  /health    status, weights_loaded, device, cold start, model hash

Every failure a client can cause is a 4xx with a message; nothing a client sends crashes it.
(No `from __future__ import annotations` here: FastAPI resolves the endpoint annotations, which
are imported inside create_app.)
"""


from typing import Optional

from .service import ExplanationService, RequestError


def create_app(service: ExplanationService):
    from fastapi import FastAPI, File, Form, HTTPException, UploadFile
    from fastapi.concurrency import run_in_threadpool

    app = FastAPI(title="lesionlens explanation sidecar", version="1")

    @app.get("/health")
    def health() -> dict:
        return service.health()

    @app.post("/explain")
    async def explain(image: UploadFile = File(...), method: str = Form("lrp"), target: Optional[str] = Form(None),
                      concepts: int = Form(8)) -> dict:
        data = await image.read(service.max_upload_bytes + 1)
        if len(data) > service.max_upload_bytes:
            raise HTTPException(413, f"{image.filename}: upload exceeds the limit of {service.max_upload_bytes} bytes")
        try:
            result = await run_in_threadpool(service.explain, data, method, target, concepts)
        except RequestError as exc:
            raise HTTPException(400, f"{image.filename}: {exc}") from None
        result["filename"] = image.filename
        return result

    return app


def serve(model: str, run: str, host: str = "127.0.0.1", port: int = 8000, device: str = "auto") -> None:
    import uvicorn

    service = ExplanationService(model, run, device=device)
    uvicorn.run(create_app(service), host=host, port=port, log_level="info")
