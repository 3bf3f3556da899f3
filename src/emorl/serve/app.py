"""The FastAPI application: routes, bearer-token auth, upload limits, JSON errors.

    GET  /                    the web page (self-contained: inline CSS and JS)
    GET  /health              liveness and what the model is (open, no token)
    GET  /metrics             requests, errors by kind, latency percentiles, queue (JSON; ?format=prometheus)
    POST /v1/predict          one clip: multipart field `file`, or JSON {"path": ...} under --media-root
    POST /v1/predict/batch    several: multipart fields `files`, or JSON {"paths": [...]}
    GET  /openapi.json        the schema (the framework's; no Swagger UI, which would load a CDN)

Every error is ``{"error": {"code", "message", "status"}}`` with a 4xx status for bad requests and
media (5xx only for the server's own state: 503 queue full with Retry-After, 504 timeout, 500 a
model failure); the server keeps serving after each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from emorl.serve.batcher import Batcher, Job
from emorl.serve.media import Decoder, check_name, safe_name
from emorl.serve.metrics import Metrics, prometheus
from emorl.serve.schemas import ERRORS, BatchResponse, Prediction, upload_body
from emorl.serve.settings import ServeError, ServeSettings

JSON_LIMIT = 64 * 1024  # bytes of a JSON request body
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and headers beyond the files


@dataclass
class Item:
    """One file of a request: the client's name for it and where it is on this server."""

    name: str
    path: Path | None = None
    error: ServeError | None = None


class BodyLimit:
    """ASGI middleware: refuses bodies over the route's limit (413, by Content-Length before
    reading, or while streaming), and records every request in the metrics."""

    def __init__(self, app, *, limit_for, metrics: Metrics):
        self.app = app
        self.limit_for = limit_for
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.monotonic()
        state = scope.setdefault("state", {})
        status = {"code": 500}

        async def send_wrapped(msg):
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
            await send(msg)

        limit = self.limit_for(scope["path"])
        length = dict(scope.get("headers") or []).get(b"content-length")
        try:
            if length is not None and (not length.isdigit() or int(length) > limit):
                raise (
                    ServeError(400, "bad_request", "invalid Content-Length header")
                    if not length.isdigit()
                    else too_large(int(length), limit)
                )
        except ServeError as e:
            state["error"] = e.code
            await error_response(e)(scope, receive, send_wrapped)
        else:
            seen = 0

            async def limited():
                nonlocal seen
                msg = await receive()
                if msg["type"] == "http.request":
                    seen += len(msg.get("body", b""))
                    if seen > limit:
                        raise too_large(seen, limit)
                return msg

            await self.app(scope, limited, send_wrapped)
        finally:
            self.metrics.request(
                scope["path"] if scope["path"] in ROUTES else "other",
                status["code"],
                time.monotonic() - t0,
                state.get("error"),
                state.get("clips", 0),
            )


ROUTES = ("/", "/health", "/metrics", "/v1/predict", "/v1/predict/batch", "/openapi.json")


def too_large(n: int, limit: int) -> ServeError:
    return ServeError(
        413,
        "too_large",
        f"the request body is {'at least ' if n > limit else ''}{n / 2**20:.2f} MB; "
        f"this server accepts at most {limit / 2**20:.2f} MB here",
    )


def error_response(e: ServeError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)


def page_html() -> str:
    return resources.files("emorl.serve").joinpath("static/index.html").read_text(encoding="utf-8")


class Server:
    """The app's state: engine (duck-typed: ``describe``, ``decode_spec``, ``run``), settings,
    decoder, batcher, metrics and the upload folder."""

    def __init__(self, engine, settings: ServeSettings, decoder: Decoder | None = None):
        self.engine = engine
        self.s = settings
        self.metrics = Metrics()
        self.decoder = decoder or Decoder(
            engine.decode_spec(settings), timeout=settings.decode_timeout, memory_mb=settings.decode_memory_mb
        )
        self.batcher = Batcher(
            engine.run,
            max_batch=settings.max_batch,
            wait_s=settings.batch_wait_ms / 1000,
            capacity=settings.queue_size,
            on_batch=self.metrics.batch,
        )
        self.tmp = Path(tempfile.mkdtemp(prefix="emorl-serve-"))
        self.limiter = None  # anyio.CapacityLimiter, made in the event loop
        self.started = time.time()

    def limit_for(self, path: str) -> int:
        if path == "/v1/predict":
            return self.s.max_upload_bytes + FORM_OVERHEAD
        if path == "/v1/predict/batch":
            return self.s.max_upload_bytes * self.s.max_batch_items + FORM_OVERHEAD
        return JSON_LIMIT

    # ---------------------------------------------------------------- checks
    def authorize(self, request: Request) -> None:
        if self.s.token is None:
            return
        got = request.headers.get("authorization", "")
        scheme, _, value = got.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(value.strip().encode(), self.s.token.encode()):
            raise ServeError(
                401,
                "unauthorized",
                "this server needs `Authorization: Bearer <token>`" + (" (the token given is wrong)" if got else ""),
                {"WWW-Authenticate": "Bearer"},
            )

    def admit(self, n: int) -> None:
        if not self.batcher.admit(n):
            raise ServeError(
                503,
                "queue_full",
                f"the server is at its limit of {self.s.queue_size} requests in "
                "progress; retry after the time in Retry-After",
                {"Retry-After": str(self.batcher.retry_after())},
            )

    def resolve(self, rel) -> Item:
        """A client's path under the media root (symlinks resolved: the target must be inside)."""
        name = str(rel)[:200]
        root = self.s.media_root
        if root is None:
            return Item(
                name,
                error=ServeError(
                    403,
                    "paths_disabled",
                    "this server was started without --media-root: upload the file instead of naming a path",
                ),
            )
        if not isinstance(rel, str) or not rel.strip() or "\x00" in rel:
            return Item(name, error=ServeError(400, "bad_request", "path must be a non-empty string"))
        p = (root / rel).resolve()
        if not p.is_relative_to(root):
            return Item(
                name,
                error=ServeError(
                    403, "forbidden_path", f"{name}: outside this server's media root; give a path relative to it"
                ),
            )
        if not p.is_file():
            return Item(name, error=ServeError(404, "not_found", f"{name}: no such file under the media root"))
        try:
            check_name(name, self.decoder.spec.images)
        except ServeError as e:
            return Item(name, error=e)
        if p.stat().st_size > self.s.max_upload_bytes:
            return Item(name, error=too_large(p.stat().st_size, self.s.max_upload_bytes))
        return Item(name, path=p)

    # ---------------------------------------------------------------- bodies
    @contextlib.asynccontextmanager
    async def received(self, request: Request, *, batch: bool):
        """(items, ablation from a JSON body) of a request; uploaded files live in a temporary
        folder removed on exit."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        folder = self.tmp / uuid.uuid4().hex
        try:
            if kind == "multipart/form-data":
                yield await self._uploads(request, folder, batch), False
            elif kind == "application/json":
                yield await self._paths(request, batch)
            else:
                raise ServeError(
                    415,
                    "unsupported_body",
                    "send multipart/form-data with a `file` field (`files` for "
                    "batch), or application/json naming a path",
                )
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    async def _uploads(self, request: Request, folder: Path, batch: bool) -> list[Item]:
        field = "files" if batch else "file"
        n_max = self.s.max_batch_items if batch else 1
        try:
            form = await request.form(max_files=n_max, max_fields=4)
        except ServeError:
            raise
        except Exception as e:  # noqa: BLE001 - python-multipart's errors: a malformed body
            raise ServeError(400, "bad_request", f"malformed multipart body: {e}") from None
        try:
            uploads = [v for k, v in form.multi_items() if k in ("file", "files") and hasattr(v, "read")]
            if not uploads:
                raise ServeError(422, "missing_file", f"no file: send it in the multipart field `{field}`")
            folder.mkdir(parents=True)
            items = []
            for i, up in enumerate(uploads):
                name = safe_name(up.filename, f"upload{i}")
                item = Item(name)
                try:
                    ext = check_name(name, self.decoder.spec.images)
                    size = up.size if up.size is not None else 0
                    if size > self.s.max_upload_bytes:
                        raise too_large(size, self.s.max_upload_bytes)
                    if size == 0:
                        raise ServeError(422, "empty_file", f"{name}: the file is empty")
                    item.path = folder / f"{i}{ext}"
                    with item.path.open("wb") as f:
                        await asyncio.to_thread(shutil.copyfileobj, up.file, f, 2**20)
                except ServeError as e:
                    item.error = e
                items.append(item)
            return items
        finally:
            await form.close()

    async def _paths(self, request: Request, batch: bool) -> tuple[list[Item], bool]:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ServeError(400, "bad_request", f"the body is not valid JSON: {e}") from None
        key = "paths" if batch else "path"
        if not isinstance(body, dict) or key not in body:
            raise ServeError(422, "missing_path", f"the JSON body must be an object with {key!r}")
        unknown = set(body) - {key, "ablation"}
        if unknown:
            raise ServeError(
                422, "unknown_field", f"unknown field(s) {', '.join(sorted(unknown))}; known: {key}, ablation"
            )
        ablation = body.get("ablation", False)
        if not isinstance(ablation, bool):
            raise ServeError(422, "invalid_parameter", "ablation must be true or false")
        paths = body[key] if batch else [body[key]]
        if not isinstance(paths, list) or not paths:
            raise ServeError(422, "missing_path", "paths must be a non-empty list of strings")
        if len(paths) > self.s.max_batch_items:
            raise ServeError(422, "too_many_items", f"{len(paths)} paths; at most {self.s.max_batch_items} a request")
        return [self.resolve(p) for p in paths], ablation

    def batch_results(self, items: list[Item], outs: list) -> list[dict]:
        """Per item its answer or ``{"id", "error"}`` (counted in the metrics by code)."""
        results = []
        for it, r in zip(items, outs, strict=True):
            if isinstance(r, ServeError):
                self.metrics.error(r.code)
                results.append({"id": it.name, "error": r.body()["error"]})
            elif isinstance(r, BaseException):
                raise r
            else:
                results.append(r)
        return results

    # ---------------------------------------------------------------- one clip
    async def answer(self, item: Item, ablation: bool, t0: float) -> dict:
        import anyio

        if item.error:
            raise item.error
        deadline = t0 + self.s.timeout
        t_dec = time.monotonic()
        try:
            with anyio.fail_after(max(0.0, deadline - t_dec)):
                dec = await anyio.to_thread.run_sync(
                    self.decoder.decode, item.path, item.name, limiter=self.limiter, abandon_on_cancel=True
                )
        except TimeoutError:
            raise ServeError(
                504, "timeout", f"{item.name}: no answer within {self.s.timeout:g} s (waiting to be decoded)"
            ) from None
        notes = [*dec.clip.notes, *(f"flag:{f}" for f in dec.clip.flags)]
        job = Job(item.name, dec.clip, dec.kind, ablation, deadline, media_notes=notes)
        t_q = time.monotonic()
        self.batcher.submit(job)
        try:
            res = await asyncio.wait_for(asyncio.wrap_future(job.future), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            job.cancelled = True
            raise ServeError(
                504, "timeout", f"{item.name}: no answer within {self.s.timeout:g} s (the per-request timeout)"
            ) from None
        done = time.monotonic()
        inf = res["timings"]["inference_ms"]
        res["timings"].update(
            decode_ms=round((t_q - t_dec) * 1000, 1),
            queue_ms=round(max(0.0, (done - t_q) * 1000 - inf), 1),
            total_ms=round((done - t0) * 1000, 1),
        )
        return res


def create_app(engine, settings: ServeSettings, *, decoder: Decoder | None = None) -> FastAPI:
    """The app serving ``engine`` under ``settings`` (see the module docstring for the routes)."""
    srv = Server(engine, settings, decoder)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        import anyio

        srv.limiter = anyio.CapacityLimiter(settings.decode_workers)
        await asyncio.to_thread(srv.decoder.warm_up)
        srv.batcher.start()
        try:
            yield
        finally:
            srv.batcher.stop()
            shutil.rmtree(srv.tmp, ignore_errors=True)

    app = FastAPI(
        title="emorl",
        summary="Emotion, reasoning and class probabilities for video clips",
        description="See docs/serving.md.",
        version="1",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.server = srv
    app.add_middleware(BodyLimit, limit_for=srv.limit_for, metrics=srv.metrics)

    add_error_handlers(app)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(
            page_html(),
            headers={
                "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                "img-src 'self' blob: data:; media-src 'self' blob:",
                "X-Content-Type-Options": "nosniff",
            },
        )

    @app.get("/health", summary="liveness and the model's description")
    async def health():
        return {
            "status": "ok",
            **engine.describe(),
            "auth": settings.token is not None,
            "paths": settings.media_root is not None,
            "batching": {
                "max_batch": settings.max_batch,
                "batch_wait_ms": settings.batch_wait_ms,
                "queue_size": settings.queue_size,
                "timeout_s": settings.timeout,
            },
            "limits": {
                "max_upload_mb": settings.max_upload_mb,
                "max_seconds": settings.max_seconds,
                "max_pixels": settings.max_pixels,
                "max_batch_items": settings.max_batch_items,
            },
            "uptime_s": round(time.time() - srv.started, 1),
        }

    @app.get("/metrics", summary="requests, errors by kind, latency percentiles, queue depth")
    async def metrics(request: Request, format: str = Query("json", pattern="^(json|prometheus)$")):
        srv.authorize(request)
        snap = srv.metrics.snapshot(
            depth=srv.batcher.depth,
            in_progress=srv.batcher.admitted,
            capacity=settings.queue_size,
            running=srv.batcher.running,
        )
        snap["batches"]["phase_seconds"] = {k: round(v, 3) for k, v in getattr(engine, "phase_seconds", {}).items()}
        return PlainTextResponse(prometheus(snap)) if format == "prometheus" else snap

    @app.post(
        "/v1/predict",
        response_model=Prediction,
        responses=ERRORS,
        openapi_extra=upload_body(False),
        summary="emotion, reasoning and class probabilities of one clip",
    )
    async def predict(
        request: Request,
        ablation: bool = Query(False, description="also run video only and audio only: modality contributions"),
    ):
        t0 = time.monotonic()
        srv.authorize(request)
        srv.admit(1)
        try:
            async with srv.received(request, batch=False) as (items, json_ablation):
                res = await srv.answer(items[0], ablation or json_ablation, t0)
                request.state.clips = 1
                return res
        finally:
            srv.batcher.release(1)

    @app.post(
        "/v1/predict/batch",
        response_model=BatchResponse,
        responses=ERRORS,
        openapi_extra=upload_body(True),
        summary="several clips; each gets its answer or its own error",
    )
    async def predict_batch(request: Request, ablation: bool = Query(False)):
        t0 = time.monotonic()
        srv.authorize(request)
        srv.admit(1)
        held = 1
        try:
            async with srv.received(request, batch=True) as (items, json_ablation):
                srv.admit(len(items) - 1)  # every clip counts against the queue's bound
                held = len(items)
                outs = await asyncio.gather(
                    *(srv.answer(it, ablation or json_ablation, t0) for it in items), return_exceptions=True
                )
        finally:
            srv.batcher.release(held)
        results = srv.batch_results(items, outs)
        request.state.clips = sum("error" not in r for r in results)
        return {"results": results}

    return app


def add_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": {"code", "message", "status"}}``, its code kept for /metrics."""

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, e: ServeError):
        request.state.error = e.code
        return error_response(e)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        where = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        return await _serve_error(request, ServeError(422, "invalid_parameter", where))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        msg = f"no route {request.method} {request.url.path}" if e.status_code in (404, 405) else str(e.detail)
        return await _serve_error(request, ServeError(e.status_code, code, msg))

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception):
        return await _serve_error(request, ServeError(500, "internal", f"internal error: {type(e).__name__}"))
