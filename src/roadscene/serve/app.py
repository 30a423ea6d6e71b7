"""The FastAPI application: the model loaded once, answering frames through `Predictor.
generate_batch` (the same prediction code as `roadscene predict` and `describe`) in micro-batches.

Routes: `POST /v1/describe` (one image), `POST /v1/sessions` / `DELETE /v1/sessions/{id}` (live
sessions), `GET /healthz`, `GET /metrics` (Prometheus), `GET /openapi.json` and `GET /docs` (the
OpenAPI page, served offline), and the web page (`/`, `/app.js`, `/app.css`). Every route but
/healthz and the static page files goes through the guard (rate limit, token, body limits).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from roadscene.data.examples import VisionTextExample
from roadscene.data.quality import FrameQuality, frame_quality
from roadscene.predict.describe import describe_prompt
from roadscene.predict.predictor import Predictor
from roadscene.serve.answers import DescribeOut, ErrorOut, LatencyOut, SessionOut, describe_answer
from roadscene.serve.batcher import BatcherStopped, MicroBatcher, QueueFull
from roadscene.serve.guard import ApiError, Guard
from roadscene.serve.metrics import ServeMetrics
from roadscene.serve.sessions import SessionStore, SpeakDecision
from roadscene.serve.settings import ServeSettings
from roadscene.serve.uploads import UploadLimits, read_frames
from roadscene.targets import (
    NavigationCue,
    ParsedResponse,
    Verbosity,
    cue_for_parsed,
    parse_response,
    unclear_view_cue,
)

# The web page: file name -> media type. Only these names are ever served (no client path).
WEB_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'",
}
DOCS_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in {
        400: "Unreadable image",
        401: "Missing or wrong token",
        404: "Unknown session",
        408: "Upload too slow",
        413: "Body or image too large",
        415: "Not an image upload",
        422: "Missing field",
        429: "Rate limit",
        503: "Busy",
        504: "Timed out",
    }.items()
}
# documents the bearer scheme on the OpenAPI page; the guard enforces it before any body is read
bearer = HTTPBearer(auto_error=False, description="The server's token (when it has one).")


@cache
def web_file(name: str) -> bytes:
    return (resources.files("roadscene.serve") / "web" / name).read_bytes()


@cache
def docs_file(name: str) -> bytes:
    from swagger_ui_bundle import swagger_ui_path

    return (swagger_ui_path / name).read_bytes()


def route_label(path: str, routes: frozenset[str]) -> str:
    """The route a path belongs to, for metrics labels (never the client's own text)."""
    if path.startswith("/v1/sessions/") and path.count("/") == 3:
        return "/v1/sessions/{session}"
    return path if path in routes else "other"


@dataclass
class Served:
    """One frame's answer before it becomes JSON."""

    cue: NavigationCue
    answer: str | None
    parsed: ParsedResponse | None
    quality: FrameQuality | None
    batch_size: int = 0
    queue_s: float = 0.0
    model_s: float = 0.0


class Assistant:
    """The loaded model, its batcher, the sessions and the metrics of one server."""

    def __init__(self, settings: ServeSettings, predictor: Predictor) -> None:
        self.settings = settings
        self.predictor = predictor
        self.prompt = describe_prompt(predictor.card)
        self.decoding = settings.decoding()
        predictor.prepare(self.decoding)  # compile the grammar before the first request
        self.metrics = ServeMetrics()
        self.sessions = SessionStore(
            ttl_s=settings.session_ttl_s, max_sessions=settings.max_sessions
        )
        self.batcher: MicroBatcher[VisionTextExample, str] = MicroBatcher(
            self._generate,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_wait_ms / 1000,
            max_queue=settings.max_queue,
            observer=self.metrics,
        )
        self.limits = UploadLimits(max_pixels=settings.max_pixels)

    def _generate(self, examples: Sequence[VisionTextExample]) -> list[str]:
        return self.predictor.generate_batch(examples, self.decoding)

    def inspect(self, data: bytes, content_type: str | None) -> tuple[list, FrameQuality | None]:
        """Decode the upload and check its first frame (in a worker thread: it is CPU work)."""
        frames = read_frames(data, content_type, self.limits)
        quality = (
            frame_quality(frames[0], self.settings.frame_thresholds)
            if self.settings.frame_check
            else None
        )
        return frames, quality

    async def answer(self, frames: list, quality: FrameQuality | None, deadline: float) -> Served:
        if quality is not None and not quality.usable:
            self.metrics.unclear.labels(quality.problem).inc()
            return Served(unclear_view_cue(), None, None, quality)
        example = VisionTextExample(images=frames, prompt=self.prompt, image_ref="upload")
        timeout = self.settings.request_timeout_s
        try:
            result = await asyncio.wait_for(
                self.batcher.submit(example), max(0.0, deadline - time.perf_counter())
            )
        except TimeoutError:
            raise ApiError(
                504, "timeout", f"no answer within {timeout:g} s ({self.batcher.depth} waiting)"
            ) from None
        except QueueFull as err:
            raise ApiError(
                503, "busy", f"server busy: {err}; retry shortly", {"Retry-After": "1"}
            ) from None
        except BatcherStopped as err:
            raise ApiError(503, "unavailable", str(err)) from None
        except Exception as err:  # this frame alone failed (its batch-mates were answered)
            raise ApiError(
                500, "model_error", f"the model failed on this frame: {type(err).__name__}: {err}"
            ) from None
        parsed = parse_response(result.value)
        return Served(
            cue_for_parsed(parsed),
            result.value,
            parsed,
            quality,
            result.batch_size,
            result.queued_s,
            result.model_s,
        )


def _error_response(assistant: Assistant, error: ApiError) -> JSONResponse:
    assistant.metrics.errors.labels(error.code).inc()
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def create_app(settings: ServeSettings, predictor: Predictor) -> FastAPI:
    """The application for a loaded model (`uvicorn.run(create_app(...))` serves it)."""
    assistant = Assistant(settings, predictor)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await assistant.batcher.start()
        try:
            yield
        finally:
            await assistant.batcher.stop()

    app = FastAPI(
        title="roadscene live assistant",
        summary="Describe a street scene for a blind or visually impaired pedestrian.",
        version="1",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.assistant = assistant
    guarded = [Depends(bearer)]

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, error: ApiError) -> JSONResponse:
        return _error_response(assistant, error)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}"
            for e in error.errors()
        )
        return _error_response(assistant, ApiError(422, "invalid_request", problems))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "bad_request")
        return _error_response(assistant, ApiError(error.status_code, code, str(error.detail)))

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, str]:
        """Liveness: the model is loaded and the server answers (no token needed)."""
        return {"status": "ok"}

    @app.get("/metrics", tags=["service"], dependencies=guarded, response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics: requests, errors, queue depth, batch sizes, latencies."""
        from prometheus_client import CONTENT_TYPE_LATEST

        assistant.metrics.sessions.set(len(assistant.sessions))
        assistant.metrics.queue.set(assistant.batcher.depth)
        return Response(assistant.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/v1/sessions",
        tags=["describe"],
        dependencies=guarded,
        status_code=201,
        responses=ERROR_RESPONSES,
    )
    async def start_session() -> SessionOut:
        """Start a live session: its cues are spoken only when something changed."""
        session = assistant.sessions.create()
        return SessionOut(
            session=session.id,
            reminder_s=settings.reminder_s,
            expires_after_s=settings.session_ttl_s,
        )

    @app.delete(
        "/v1/sessions/{session}",
        tags=["describe"],
        dependencies=guarded,
        status_code=204,
        responses=ERROR_RESPONSES,
    )
    async def end_session(session: str) -> Response:
        """End a live session."""
        if not assistant.sessions.end(session):
            raise ApiError(404, "unknown_session", "unknown or already ended session")
        return Response(status_code=204)

    @app.post("/v1/describe", tags=["describe"], dependencies=guarded, responses=ERROR_RESPONSES)
    async def describe(
        image: Annotated[UploadFile, File(description="One frame: JPEG, PNG or WebP.")],
        session: Annotated[str | None, Form(description="A live session's id.")] = None,
        verbosity: Annotated[Verbosity, Form(description="brief, normal or detailed.")] = "normal",
    ) -> DescribeOut:
        """Describe one frame: fields, close and far objects, the cue with its urgency and clock
        directions, and (in a session) whether to speak it now."""
        started = time.perf_counter()
        deadline = started + settings.request_timeout_s
        walker = assistant.sessions.get(session) if session is not None else None
        if session is not None and walker is None:
            raise ApiError(
                404,
                "unknown_session",
                "unknown or expired session: start a new one with POST /v1/sessions",
            )
        data = await image.read()
        frames, quality = await run_in_threadpool(assistant.inspect, data, image.content_type)
        frame_number = walker.next_frame(time.monotonic()) if walker is not None else 0
        served = await assistant.answer(frames, quality, deadline)
        decision = (
            walker.decide(served.cue, frame_number, time.monotonic(), settings.reminder_s)
            if walker is not None
            else SpeakDecision(True, "no session")
        )
        total_s = time.perf_counter() - started
        assistant.metrics.latency.observe(total_s)
        return describe_answer(
            session=session,
            cue=served.cue,
            decision=decision,
            verbosity=verbosity,
            answer=served.answer,
            parsed=served.parsed,
            quality=served.quality,
            latency=LatencyOut(
                total_ms=round(total_s * 1000, 1),
                queue_ms=round(served.queue_s * 1000, 1),
                model_ms=round(served.model_s * 1000, 1),
                batch_size=served.batch_size,
            ),
        )

    def page_route(path: str, name: str) -> None:
        async def serve_file() -> Response:
            return Response(web_file(name), media_type=WEB_FILES[name], headers=PAGE_HEADERS)

        app.get(path, include_in_schema=False)(serve_file)

    page_route("/", "index.html")
    for name in ("app.js", "app.css"):
        page_route(f"/{name}", name)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="roadscene live assistant: API",
            swagger_js_url="/docs/swagger-ui-bundle.js",
            swagger_css_url="/docs/swagger-ui.css",
            swagger_favicon_url="/docs/favicon-32x32.png",
        )

    def docs_route(name: str) -> None:
        async def serve_file() -> Response:
            return Response(docs_file(name), media_type=DOCS_FILES[name])

        app.get(f"/docs/{name}", include_in_schema=False)(serve_file)

    for name in DOCS_FILES:
        docs_route(name)

    public = {"/healthz", "/", "/docs", "/app.js", "/app.css"} | {f"/docs/{n}" for n in DOCS_FILES}
    routes = frozenset({"/metrics", "/v1/describe", "/v1/sessions", "/openapi.json", *public})
    app.add_middleware(
        Guard,
        settings=settings,
        metrics=assistant.metrics,
        public_paths=public,
        upload_paths={"/v1/describe"},
        route_label=lambda path: route_label(path, routes),
    )
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app
