"""What stands between a client and the model, checked before any body is read: a per-client rate
limit, the bearer token, the body size (declared and actual), the upload's content type and the
time allowed to send it. Every refusal is a JSON error `{"error": code, "detail": message}`.

It is plain ASGI middleware rather than FastAPI dependencies because FastAPI parses a form body
before any dependency runs: an unauthenticated or oversized upload must be refused first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from roadscene.serve.metrics import ServeMetrics
from roadscene.serve.settings import ServeSettings

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ApiError(Exception):
    """An error answer: HTTP status, a short machine-readable code and a message naming the
    problem."""

    def __init__(
        self, status: int, code: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}


async def send_error(send: Send, error: ApiError) -> None:
    """Answer with `error` as JSON (raw ASGI)."""
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RateLimiter:
    """A token bucket per client: `burst` requests at once, refilled at `rate_per_s`."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.rate_per_s, self.burst, self.clock = rate_per_s, burst, clock
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, time

    def take(self, client: str) -> float:
        """0 when `client` may go ahead (a token is spent), else the seconds until it may."""
        now = self.clock()
        tokens, then = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate_per_s)
        wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate_per_s
        self._buckets[client] = (tokens - 1.0 if wait == 0.0 else tokens, now)
        while len(self._buckets) > self.max_clients:  # forget the longest-idle clients
            self._buckets.popitem(last=False)
        return wait


class _BodyRefused(Exception):
    """The body broke a limit; the error answer has already been sent."""


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class Guard:
    """ASGI middleware applying the settings' limits to every path outside `public_paths`."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        *,
        settings: ServeSettings,
        metrics: ServeMetrics,
        public_paths: Iterable[str],
        upload_paths: Iterable[str],
        route_label: Callable[[str], str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.public_paths = frozenset(public_paths)
        self.upload_paths = frozenset(upload_paths)
        self.route_label = route_label
        self.clock = clock
        self.limiter = (
            RateLimiter(settings.rate_per_s, settings.rate_burst, clock=clock)
            if settings.rate_per_s > 0
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = self.route_label(path)  # a route's name, never the client's own text

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(route, str(message["status"])).inc()
            await send(message)

        if path in self.public_paths:
            await self.app(scope, receive, counted_send)
            return
        error = self._refusal(scope)
        if error is not None:
            self.metrics.errors.labels(error.code).inc()
            await send_error(counted_send, error)
            return
        await self._guarded(scope, receive, counted_send)

    def _refusal(self, scope: Scope) -> ApiError | None:
        """The first limit the request's head breaks, if any."""
        settings = self.settings
        client = scope["client"][0] if scope.get("client") else "unknown"
        if self.limiter is not None:
            wait = self.limiter.take(client)
            if wait > 0:
                return ApiError(
                    429,
                    "rate_limited",
                    f"too many requests from {client}: at most {settings.rate_per_s:g} a second "
                    f"(bursts of {settings.rate_burst}); retry in {wait:.1f} s",
                    {"Retry-After": str(max(1, round(wait)))},
                )
        if settings.token is not None:
            sent = _header(scope, b"authorization") or ""
            scheme, _, value = sent.partition(" ")
            if scheme.lower() != "bearer" or not secrets.compare_digest(
                value.strip().encode(), settings.token.encode()
            ):
                detail = "missing bearer token" if not sent else "wrong bearer token"
                return ApiError(
                    401,
                    "unauthorized",
                    f"{detail}: send 'Authorization: Bearer TOKEN'",
                    {"WWW-Authenticate": "Bearer"},
                )
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return ApiError(400, "bad_request", "Content-Length is not a number")
            if int(declared) > settings.max_upload_bytes:
                return ApiError(
                    413,
                    "too_large",
                    f"request body of {int(declared):,} bytes is over the limit of "
                    f"{settings.max_upload_bytes:,} bytes",
                )
        if scope["method"] == "POST" and scope["path"] in self.upload_paths:
            content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
            if content_type != "multipart/form-data":
                return ApiError(
                    415,
                    "unsupported_media_type",
                    f"send the image as multipart/form-data (field 'image'), not "
                    f"'{content_type or 'no content type'}'",
                )
        return None

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with the body capped in size and in time; a refusal answers at once and
        whatever the app answers afterwards is dropped."""
        settings = self.settings
        deadline = self.clock() + settings.request_timeout_s
        received = 0
        body_done = False
        refused = False

        async def refuse(error: ApiError) -> None:
            nonlocal refused
            refused = True
            self.metrics.errors.labels(error.code).inc()
            await send_error(send, error)
            raise _BodyRefused

        async def guarded_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # after the body: waiting for a disconnect is not limited
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - self.clock()))
            except TimeoutError:
                await refuse(
                    ApiError(
                        408,
                        "timeout",
                        f"the request body took over {settings.request_timeout_s:g} s to arrive",
                    )
                )
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > settings.max_upload_bytes:
                    await refuse(
                        ApiError(
                            413,
                            "too_large",
                            f"request body is over the limit of "
                            f"{settings.max_upload_bytes:,} bytes",
                        )
                    )
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        with contextlib.suppress(_BodyRefused):  # already answered
            await self.app(scope, guarded_receive, guarded_send)
