"""The viewer web app: ``create_app(settings)`` -> Starlette (API, SSE, metrics, the page).

Routes (all ``/api/*`` need credentials except ``/api/login`` and ``/api/public/*``):

==========================================  =============================================
``GET /health``                             liveness + whether the view has loaded (no counts)
``GET /metrics``                            Prometheus (token unless ``LVP_METRICS_PUBLIC``)
``GET /api/viewers``                        snapshot (``?limit=`` 1..5000, ``?cursor=``)
``GET /api/viewers/stream``                 SSE: snapshot, then deltas
``GET /api/stats``                          aggregates
``GET /api/public/stats``                   open: noisy counts (differential privacy)
``GET /api/profiles/{id}``                  one profile from DynamoDB
``GET /api/profiles/{id}/history``          its status changes
``POST /api/login`` / ``POST /api/logout``  session cookie for the page
``GET /api/session``                        who am I (the page's login check)
``POST /api/stream-ticket``                 short-lived ``?ticket=`` for EventSource
``/``                                       the live page (``viewer-frontend/``)
==========================================  =============================================
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lvp.config import Settings
from lvp.gc_policy import service_gc
from viewer import auth, profiles_api
from viewer.auth import Authenticator, AuthMiddleware, ConnectionLimiter, LoginThrottle, Principal
from viewer.hub import RETRY_FRAME
from viewer.live import DEFAULT_LIMIT, MAX_LIMIT, CursorError, Subscription, decode_cursor
from viewer.metrics import ViewerMetrics
from viewer.privacy import (
    BudgetExhausted,
    BudgetUnavailable,
    PublicStatsReleaser,
    TrueCounts,
    releaser_from_settings,
)
from viewer.profiles_api import ProfileReader
from viewer.security import ForwardedMiddleware
from viewer.service import LiveService

log = logging.getLogger("lvp.viewer")
access_log = logging.getLogger("lvp.viewer.access")

FRONTEND_DIR = Path(__file__).resolve().parent.parent / "viewer-frontend"
PING_S = 15.0
SEND_TIMEOUT_S = 30.0
LOAD_WAIT_S = 10.0
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
]


class JSONBytes(Response):
    media_type = "application/json"


def _json(data: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONBytes(orjson.dumps(data), status_code=status_code, headers=headers)


class ParamError(ValueError):
    pass


def _paging(request: Request) -> tuple[int, str | None]:
    q = request.query_params
    try:
        limit = int(q.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise ParamError(f"limit must be an integer 1..{MAX_LIMIT}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise ParamError(f"limit must be 1..{MAX_LIMIT}")
    cursor = q.get("cursor") or None
    if cursor is not None:
        try:
            decode_cursor(cursor)
        except CursorError:
            raise ParamError("invalid cursor") from None
    return limit, cursor


def _service(request: Request) -> LiveService:
    svc: LiveService = request.app.state.service
    return svc


# --- handlers -------------------------------------------------------------------------------
async def health(request: Request) -> Response:
    return _json(_service(request).health())


async def metrics(request: Request) -> Response:
    m: ViewerMetrics = request.app.state.metrics
    return Response(m.render(), media_type=m.content_type)


async def viewers(request: Request) -> Response:
    try:
        limit, cursor = _paging(request)
    except ParamError as exc:
        return _json({"error": str(exc)}, 400)
    return JSONBytes(_service(request).snapshot_json(limit, cursor), headers={"Cache-Control": "no-store"})


async def public_stats(request: Request) -> Response:
    """Open: active-viewer counts with differential-privacy noise (:mod:`viewer.privacy`)."""
    releaser: PublicStatsReleaser = request.app.state.public_releaser
    counts = _service(request).view.counts()  # read on the loop; noise drawn off it
    truth = TrueCounts(counts["active"], counts["by_status"], counts["by_media"])
    try:
        release = await asyncio.to_thread(releaser.release, lambda: truth)
    except (BudgetExhausted, BudgetUnavailable) as exc:  # nothing was ever released: no answer
        retry = {"Retry-After": str(int(exc.retry_in_s) + 1)} if exc.retry_in_s else None
        return _json({"error": str(exc)}, 503, headers=retry)
    return _json(release, headers={"Cache-Control": "public, max-age=5"})


async def stats(request: Request) -> Response:
    return _json(_service(request).stats(), headers={"Cache-Control": "no-store"})


class StreamResponse(EventSourceResponse):
    """An SSE response that frees its hub client and limiter slot however it ends."""

    def __init__(self, *args: Any, on_close: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


async def _until_loaded(svc: LiveService, timeout: float = LOAD_WAIT_S) -> None:
    """A stream opened while a fresh process still reads the changes topic (a client reconnecting
    after a restart) waits, bounded, for the view to load: its snapshot is then the current one."""
    deadline = time.monotonic() + timeout
    while svc.reader is not None and not svc.loaded and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def stream(request: Request) -> Response:
    svc = _service(request)
    q = request.query_params
    try:  # the stream shows one window: a page of rows, optionally one status or a search
        sub = Subscription.parse(_paging(request)[0], q.get("status") or None, q.get("q"))
    except ValueError as exc:
        return _json({"error": str(exc)}, 400)
    await _until_loaded(svc)
    principal: Principal = request.state.principal
    limiter: ConnectionLimiter = request.app.state.limiter
    m: ViewerMetrics = request.app.state.metrics
    if not limiter.acquire(principal.key):
        m.sse_rejected.inc()
        return _json(
            {"error": "too many concurrent streams for this token", "limit": limiter.max_per_key},
            429,
            headers={"Retry-After": "5"},
        )
    last_id = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    client, first = svc.subscribe(principal.key, sub, last_id)
    first = [RETRY_FRAME, *first]
    m.sse_clients.set(svc.hub.client_count())
    closed = False

    def on_close() -> None:
        nonlocal closed
        if closed:
            return
        closed = True
        svc.hub.disconnect(client)
        limiter.release(principal.key)
        m.sse_clients.set(svc.hub.client_count())

    return StreamResponse(
        client.frames(first),
        on_close=on_close,
        ping=PING_S,
        send_timeout=SEND_TIMEOUT_S,
        headers={"Cache-Control": "no-store"},
    )


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "not found"}, status_code=404)


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": "method not allowed"}, status_code=405)


# --- middleware -------------------------------------------------------------------------------
class AccessLogMiddleware:
    """``METHOD /path status ms`` — never the query string (it may carry a ticket)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d %.1fms",
                    scope.get("method", "-"),
                    scope.get("path", "-"),
                    status,
                    (time.perf_counter() - start) * 1000,
                )


# --- the app ----------------------------------------------------------------------------------
def create_app(
    settings: Settings,
    *,
    push_interval_s: float | None = None,
    client_queue_frames: int = 64,
    ring_frames: int = 1024,
    read_changes: bool = True,
    frontend_dir: Path | None = None,
) -> Starlette:
    """The viewer app. ``read_changes=False`` skips the Kafka reader (the view is then fed by
    calling ``app.state.service.on_batch``)."""
    metrics_ = ViewerMetrics()
    service = LiveService(
        settings,
        metrics_,
        push_interval_s=push_interval_s,
        client_queue_frames=client_queue_frames,
        ring_frames=ring_frames,
    )
    profile_reader = ProfileReader(settings)
    authenticator = Authenticator(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await profile_reader.open()
        await service.start(read_changes=read_changes)
        try:
            with service_gc():  # (lvp.gc_policy: the live view holds every active viewer)
                yield
        finally:
            await service.stop()
            await profile_reader.close()

    routes: list[Route | Mount] = [
        Route("/health", health),
        Route("/metrics", metrics),
        Route("/api/viewers", viewers),
        Route("/api/viewers/stream", stream),
        Route("/api/stats", stats),
        Route("/api/public/stats", public_stats),
        Route("/api/profiles/{viewer_id}", profiles_api.get_profile),
        Route("/api/profiles/{viewer_id}/history", profiles_api.get_history),
        Route("/api/login", auth.login, methods=["POST"]),
        Route("/api/logout", auth.logout, methods=["POST"]),
        Route("/api/session", auth.session),
        Route("/api/stream-ticket", auth.stream_ticket, methods=["POST"]),
    ]
    folder = frontend_dir or FRONTEND_DIR
    if folder.is_dir():
        routes.append(Mount("/", StaticFiles(directory=folder, html=True), name="page"))
    else:
        log.warning("page folder %s not found: serving the API only", folder)

    origins = settings.viewer_cors_origin_list  # credentials only for listed origins, never *
    middleware = [
        Middleware(ForwardedMiddleware, trusted_proxies=settings.viewer_trusted_proxies),
        Middleware(AccessLogMiddleware),
        Middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            allow_credentials="*" not in origins,
            max_age=600,
        ),
        Middleware(AuthMiddleware, auth=authenticator, metrics_public=settings.metrics_public),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={404: _not_found, 405: _not_allowed},
    )
    app.state.settings = settings
    app.state.metrics = metrics_
    app.state.service = service
    app.state.profiles = profile_reader
    app.state.auth = authenticator
    app.state.limiter = ConnectionLimiter(settings.sse_max_per_token)
    app.state.login_throttle = LoginThrottle()
    app.state.public_releaser = releaser_from_settings(settings)
    return app
