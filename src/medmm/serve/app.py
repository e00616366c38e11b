"""The FastAPI service: `create_app({name: Predictor}, ...)`.

    POST /v1/models/{name}/predict        multipart: `image` file (repeated: the views of one study)
                                          + text fields (Sample.text keys)
    POST /v1/models/{name}/predict_batch  multipart: `image` repeated; each text field once (for all)
                                          or once per image, in the same order
    GET  /v1/models   /healthz   /readyz   /metrics (Prometheus)   /docs, /openapi.json

Form fields map onto `Sample` fields generically (the image -> Sample.images, any known text
key -> Sample.text), so every task is served the same way. Inference runs in one micro-batching
thread per model (batcher.py). Errors answer 4xx JSON {"error": "..."}; logs are JSON lines
that never hold uploaded content, text fields or DICOM header values.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
import uuid
from typing import Any

from fastapi import Request  # at module level: route signatures are resolved from this module's names

from medmm.data.schema import TEXT_FIELDS
from medmm.errors import MedmmError
from medmm.serve.batcher import MicroBatcher
from medmm.serve.inputs import InputError, decode_image
from medmm.serve.predictor import Predictor

log = logging.getLogger("medmm.serve")
_FORM_LIMITS = {"max_files": 64, "max_fields": 64, "max_part_size": 1 << 20}


class _BodyLimit:
    """ASGI middleware: answer 413 when a request body is over `limit` bytes (declared or streamed)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _send_json(send, 413, {"error": f"request body over the limit of {self.limit} bytes"})
        seen = 0

        async def limited():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return msg

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _send_json(send, 413, {"error": f"request body over the limit of {self.limit} bytes"})


class _TooLarge(Exception):
    pass


async def _send_json(send, status: int, obj: dict[str, Any]) -> None:
    body = json.dumps(obj).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(predictors: dict[str, Predictor], *, token: str | None = None, max_batch: int = 8, max_wait_ms: float = 5.0,
               max_body_bytes: int = 32 << 20, max_pixels: int = 50_000_000, request_timeout_s: float = 120.0):
    """The service for `predictors` (name -> loaded package). `token`: required as a Bearer token
    on /v1 and /metrics when set."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, PlainTextResponse
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    registry = CollectorRegistry()
    requests_total = Counter("medmm_requests_total", "HTTP requests", ["model", "endpoint", "status"], registry=registry)
    latency = Histogram("medmm_request_seconds", "request latency", ["model", "endpoint"], registry=registry,
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
    batch_size = Histogram("medmm_batch_size", "samples per inference batch", ["model"], registry=registry,
                           buckets=(1, 2, 4, 8, 16, 32, 64))
    batch_seconds = Histogram("medmm_batch_seconds", "seconds per inference batch", ["model"], registry=registry)
    queue_depth = Gauge("medmm_queue_depth", "requests waiting for inference", ["model"], registry=registry)

    def observer(name: str):
        def on_batch(n: int, seconds: float) -> None:
            batch_size.labels(name).observe(n)
            batch_seconds.labels(name).observe(seconds)
        return on_batch

    batchers = {n: MicroBatcher(p, max_batch, max_wait_ms, observer(n)) for n, p in predictors.items()}
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        for b in batchers.values():
            b.close()

    app = FastAPI(title="medmm serve", version="1", description="Trained medmm models: predictions, generated text, explanations.",
                  lifespan=lifespan)
    app.state.batchers = batchers
    app.add_middleware(_BodyLimit, limit=max_body_bytes)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.middleware("http")
    async def access(request: Request, call_next):
        rid = uuid.uuid4().hex[:12]
        t0 = time.perf_counter()
        path = request.url.path
        if token and (path.startswith("/v1") or path == "/metrics"):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                response = error(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
                _log(rid, request.method, path, 401, t0)
                return response
        try:
            response = await call_next(request)
        except Exception as exc:  # noqa: BLE001 - the server answers 500 and lives on
            log.error(json.dumps({"event": "error", "request_id": rid, "path": path, "type": type(exc).__name__}))
            response = error(500, "internal error")
        response.headers["x-request-id"] = rid
        _log(rid, request.method, path, response.status_code, t0)
        return response

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz():
        """Every model is loaded and its inference thread runs."""
        dead = [n for n, b in batchers.items() if not b.alive()]
        return error(503, f"inference thread stopped: {dead}") if dead else {"status": "ready", "models": sorted(batchers)}

    @app.get("/metrics")
    def metrics():
        """Prometheus text format."""
        for n, b in batchers.items():
            queue_depth.labels(n).set(b.depth())
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        """The served models: task, inputs and outputs (labels, thresholds, preprocessing)."""
        return {"models": [{"name": n, "task": p.task_name, "inputs": p.info["inputs"], "outputs": p.info["outputs"],
                            "training_dataset": p.info["training_dataset"]} for n, p in predictors.items()]}

    form_doc = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["image"],
        "properties": {"image": {"type": "string", "format": "binary", "description": "DICOM, PNG or JPEG"},
                       "explain": {"type": "string", "description": "an explanation method, e.g. gradcam (optional)"},
                       **{f: {"type": "string"} for f in TEXT_FIELDS}}}}}}}

    async def read_form(request: Request, name: str):
        if name not in predictors:
            raise InputError(404, f"unknown model {name!r}; served: {', '.join(sorted(predictors))}")
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise InputError(415, "send multipart/form-data: the file in a field named 'image' plus text fields")
        try:
            return await request.form(**_FORM_LIMITS)
        except _TooLarge:
            raise InputError(413, f"request body over the limit of {max_body_bytes} bytes") from None
        except Exception as exc:  # noqa: BLE001 - malformed multipart bodies
            raise InputError(400, f"malformed multipart body ({type(exc).__name__})") from None

    async def run_one(name: str, views: list[bytes], text: dict[str, str], explain: str | None) -> dict[str, Any]:
        p = predictors[name]
        arr = [await asyncio.to_thread(decode_image, v, max_pixels=max_pixels) for v in views]
        try:
            sample = p.sample(arr, sample_id=f"req-{uuid.uuid4().hex[:12]}", **text)
        except MedmmError as exc:
            raise InputError(422, str(exc)) from None
        queue_depth.labels(name).set(batchers[name].depth())
        record, err = await asyncio.wait_for(asyncio.wrap_future(batchers[name].submit(sample)), request_timeout_s)
        if err is not None:
            raise InputError(*err)
        out = {"model": name, "task": p.task_name, "prediction": _public(record)}
        if explain:
            try:
                out["explanation"] = await asyncio.to_thread(p.explain, sample, explain)
            except MedmmError as exc:
                raise InputError(422, f"explanation: {exc}") from None
        return out

    async def texts_and_images(form, batch: bool) -> tuple[list[bytes | None], dict[str, list[str]]]:
        unknown = sorted(set(form.keys()) - {"image", "explain", *TEXT_FIELDS})
        if unknown:
            raise InputError(422, f"unknown form field(s) {unknown}; use 'image' and text fields: {', '.join(TEXT_FIELDS)}")
        files = form.getlist("image")
        if any(isinstance(f, str) for f in files):
            raise InputError(422, "field 'image' must be a file upload, not text")
        if not files:
            raise InputError(422, "missing field 'image' (a DICOM, PNG or JPEG file)")
        images = [await f.read() for f in files]
        text = {k: [str(v) for v in form.getlist(k)] for k in TEXT_FIELDS if k in form}
        return images, text

    @app.post("/v1/models/{name}/predict", openapi_extra=form_doc)
    async def predict(name: str, request: Request):
        """One input -> the task's prediction record (probabilities, generated text, rationale ...)."""
        t0 = time.perf_counter()
        status = 200
        try:
            form = await read_form(request, name)
            images, text = await texts_and_images(form, batch=False)
            if any(len(v) > 1 for v in text.values()):
                raise InputError(422, "each text field at most once per request")
            explain = form.get("explain") or request.query_params.get("explain")
            return await run_one(name, images, {k: v[0] for k, v in text.items()}, explain and str(explain))
        except InputError as exc:
            status = exc.status
            return error(exc.status, exc.message)
        except TimeoutError:
            status = 504
            return error(504, "inference timed out")
        finally:
            requests_total.labels(name if name in predictors else "?", "predict", str(status)).inc()
            latency.labels(name if name in predictors else "?", "predict").observe(time.perf_counter() - t0)

    @app.post("/v1/models/{name}/predict_batch", openapi_extra=form_doc)
    async def predict_batch(name: str, request: Request):
        """Several inputs: `image` repeated; each text field given once (for all) or once per image."""
        t0 = time.perf_counter()
        status = 200
        try:
            form = await read_form(request, name)
            images, text = await texts_and_images(form, batch=True)
            n = len(images)
            bad = [k for k, v in text.items() if len(v) not in (1, n)]
            if bad:
                raise InputError(422, f"text field(s) {bad} must appear once or once per image ({n})")
            jobs = [run_one(name, [img], {k: v[i if len(v) > 1 else 0] for k, v in text.items()}, None) for i, img in enumerate(images)]
            results = await asyncio.gather(*jobs, return_exceptions=True)
            out = []
            for r in results:
                if isinstance(r, InputError):
                    out.append({"error": r.message, "status": r.status})
                elif isinstance(r, BaseException):
                    raise r
                else:
                    out.append(r)
            return {"model": name, "results": out}
        except InputError as exc:
            status = exc.status
            return error(exc.status, exc.message)
        finally:
            requests_total.labels(name if name in predictors else "?", "predict_batch", str(status)).inc()
            latency.labels(name if name in predictors else "?", "predict_batch").observe(time.perf_counter() - t0)

    return app


_INTERNAL = ("id", "group", "reference", "image_path", "image")


def _public(record: dict[str, Any]) -> dict[str, Any]:
    """The record as returned: without the internal request id, temp or empty reference fields
    (a task emitting several records per input, e.g. one per prompted class, gives "records")."""
    out = {k: v for k, v in record.items() if k not in _INTERNAL}
    if "records" in out:
        out["records"] = [_public(r) for r in out["records"]]
    return out


def _log(rid: str, method: str, path: str, status: int, t0: float) -> None:
    log.info(json.dumps({"event": "request", "request_id": rid, "method": method, "path": path, "status": status,
                         "ms": round((time.perf_counter() - t0) * 1000, 2)}))
