"""The viewer behind load balancers and in browsers: client address and scheme from trusted
``X-Forwarded-*`` headers, HSTS, and the checks on the requests that set or clear the session
cookie (body size and deadline, content type, origin).

* :class:`ForwardedMiddleware` rewrites the ASGI scope's ``client`` and ``scheme`` with
  ``LVP_VIEWER_TRUSTED_PROXIES`` (the rule of :mod:`lvp.forwarded`, which the collector uses
  too), so the session cookie gets ``Secure`` behind a TLS-terminating load balancer, the login
  throttle counts per client rather than per load balancer, and https responses carry
  ``Strict-Transport-Security``.
* :func:`read_small_body` reads at most ``max_bytes`` (413 above) within a deadline (408).
* :func:`check_form_post` refuses a sign-in / sign-out that a browser sends from another origin
  (login CSRF): the body must be JSON (``415`` otherwise: an HTML form cannot send JSON, and a
  cross-origin ``fetch`` with it needs a CORS preflight), and ``Origin``, when present, must be
  the viewer's own origin or one of ``LVP_VIEWER_CORS_ORIGINS`` (``403``). Without ``Origin``
  (curl, scripts: browsers always send it on a cross-origin POST) the request is accepted unless
  ``Sec-Fetch-Site`` says it comes from another site.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lvp.forwarded import client_ip, client_scheme

HSTS = (b"strict-transport-security", b"max-age=31536000")


class ForwardedMiddleware:
    """Client address and scheme from the headers of ``trusted_proxies`` proxies (see
    :mod:`lvp.forwarded`); HSTS on every https response."""

    def __init__(self, app: ASGIApp, trusted_proxies: int) -> None:
        self.app = app
        self.hops = trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self.hops != 0:
            headers = Headers(scope=scope)
            peer = scope.get("client")
            ip = client_ip(headers, peer[0] if peer else None, self.hops)
            scope = {
                **scope,
                "client": (ip, peer[1] if peer else 0),
                "scheme": client_scheme(headers, scope.get("scheme", "http"), self.hops),
            }
        if scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def send_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), HSTS]}
            await send(message)

        await self.app(scope, receive, send_hsts)


class BodyRefused(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


async def read_small_body(request: Request, max_bytes: int, timeout_s: float) -> bytes:
    """The request body, or :class:`BodyRefused` with 413 (over ``max_bytes``, read no further),
    408 (not all there within ``timeout_s``) or 400 (the client went away)."""
    length = request.headers.get("content-length")
    if length is not None and length.isascii() and length.isdigit() and int(length) > max_bytes:
        raise BodyRefused(_too_large(max_bytes))
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise BodyRefused(_too_large(max_bytes))
                chunks.append(chunk)
    except TimeoutError:
        raise BodyRefused(
            JSONResponse(
                {"error": f"request body not received within {timeout_s:g} s"},
                status_code=408,
                headers={"Connection": "close"},
            )
        ) from None
    except ClientDisconnect:
        raise BodyRefused(JSONResponse({"error": "client disconnected"}, status_code=400)) from None
    return b"".join(chunks)


def _too_large(max_bytes: int) -> Response:
    return JSONResponse(
        {"error": f"request body larger than {max_bytes} bytes"},
        status_code=413,
        headers={"Connection": "close"},
    )


def own_origin(request: Request) -> str:
    """``scheme://host[:port]`` of the viewer as the client addressed it."""
    return f"{request.url.scheme}://{request.headers.get('host', '')}".lower()


def check_form_post(request: Request, allowed_origins: Iterable[str]) -> Response | None:
    """None when a cookie-setting POST may proceed, else the refusal (see the module doc)."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/json":
        return JSONResponse({"error": "Content-Type must be application/json"}, status_code=415)
    origin = request.headers.get("origin")
    if origin is None:
        if request.headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site"):
            return JSONResponse({"error": "cross-site request refused"}, status_code=403)
        return None
    allowed = {o.rstrip("/").lower() for o in allowed_origins if o != "*"}
    if origin.lower() == own_origin(request) or origin.rstrip("/").lower() in allowed:
        return None
    return JSONResponse(
        {"error": "origin not allowed (same origin or LVP_VIEWER_CORS_ORIGINS)"}, status_code=403
    )
