"""Serves the demo player page (``tracker-frontend/dist``, built by ``npm run build``).

The page reads its settings from ``/config.js``, generated here, so one build works against any
collector: ``window.LVP_CONFIG = {collectorUrl, appId, pingIntervalS, liveUrl}``. Query
parameters on the page (``?collector=``, ``?app_id=``, ``?ping=``, ``?live=``) override it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Where ``npm run build`` puts the page, relative to the repository root.
DEFAULT_DIST = Path(__file__).resolve().parents[2] / "tracker-frontend" / "dist"

_PORT_ONLY = re.compile(r"^:\d{1,5}$")

SECURITY_HEADERS: dict[str, str] = {
    # the collector is chosen at run time (config.js or ?collector=), so any http(s) origin
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self' blob:; connect-src 'self' http: https:; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "strict-origin-when-cross-origin",
}

_NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>tracker page not built</title>
<body style="font-family:system-ui;background:#0b0f19;color:#e7ecf5;padding:40px">
<h1>The player page is not built</h1>
<p>Build it with <code>make setup</code> (or <code>cd tracker-frontend &amp;&amp; npm ci &amp;&amp;
npm run build</code>); it is expected in <code>{dist}</code>.</p></body>"""


def default_dist_dir() -> Path:
    return DEFAULT_DIST


def validate_collector_url(url: str) -> str:
    """``http(s)://host[:port][/path]`` or ``:port`` (same host as the page); else ValueError."""
    value = url.strip()
    if _PORT_ONLY.match(value):
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"collector URL must be http(s)://host[:port] or :port, got {url!r}")
    return value.rstrip("/")


def config_js(collector_url: str, app_id: str, *, live_url: str = "", ping_interval_s: float = 10.0) -> str:
    """The body of ``/config.js``."""
    config = {
        "collectorUrl": collector_url,
        "appId": app_id,
        "pingIntervalS": ping_interval_s,
        "liveUrl": live_url,
    }
    # json.dumps escapes quotes; "<" is escaped too so the value can never close a script tag
    body = json.dumps(config).replace("<", "\\u003c")
    return f"window.LVP_CONFIG = {body};\n"


class _SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(
    dist_dir: Path,
    collector_url: str,
    app_id: str,
    *,
    live_url: str = "",
    ping_interval_s: float = 10.0,
) -> Starlette:
    """The player site: ``/`` (index.html), ``/config.js``, ``/health`` and the built assets.

    ``collector_url`` is where the page's tracker sends events (``:9090`` = port 9090 on the
    page's own host); ``live_url`` (optional) is linked from the page as the live viewer page.
    Raises ValueError for a malformed collector URL, empty app id or non-positive ping interval.
    A missing build is not an error: ``/`` then explains how to build it (HTTP 503).
    """
    collector = validate_collector_url(collector_url)
    if not app_id.strip():
        raise ValueError("app id must not be empty")
    if not ping_interval_s > 0:
        raise ValueError(f"ping interval must be positive, got {ping_interval_s!r}")
    if live_url and urlsplit(live_url).scheme not in ("http", "https"):
        raise ValueError(f"live page URL must be http(s), got {live_url!r}")
    dist = Path(dist_dir)
    script = config_js(collector, app_id.strip(), live_url=live_url, ping_interval_s=ping_interval_s)
    no_store = {"cache-control": "no-store"}

    async def config(_: Request) -> Response:
        return Response(script, media_type="text/javascript; charset=utf-8", headers=no_store)

    async def index(_: Request) -> Response:
        page = dist / "index.html"
        if not page.is_file():
            return HTMLResponse(_NOT_BUILT.format(dist=dist), status_code=503, headers=no_store)
        return HTMLResponse(page.read_text(encoding="utf-8"), headers=no_store)

    async def health(_: Request) -> Response:
        return PlainTextResponse("ok")

    routes: list[Route | Mount] = [
        Route("/", index),
        Route("/index.html", index),
        Route("/config.js", config),
        Route("/health", health),
    ]
    if dist.is_dir():
        routes.append(Mount("/", StaticFiles(directory=dist), name="dist"))
    return Starlette(routes=routes, middleware=[Middleware(_SecurityHeaders)])
