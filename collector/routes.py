"""HTTP routes of the collector (Snowplow stream collector compatible).

- ``POST /com.snowplowanalytics.snowplow/tp2``: a payload_data envelope -> ``ok`` (200) once
  Kafka acknowledged every event and bad row of the request; 400 when none of its events is
  good (all became bad rows) or the body is not an envelope; 413 over the size / event limits;
  429 over the per-client rate; 408 when the body does not arrive within LVP_REQUEST_TIMEOUT_S;
  503 + Retry-After when Kafka cannot acknowledge.
- ``GET /i``, ``/com.snowplowanalytics.snowplow/i``, ``/ice.png``: one event in the query string ->
  the 1x1 GIF (same status rules).
- ``OPTIONS`` on those paths: CORS preflight (allowed origins from ``LVP_CORS_ORIGINS``).
- ``GET /health``, ``/sink-health`` (503 while Kafka is unreachable), ``/metrics``, ``/robots.txt``.

No handler lets an exception escape (never a 500): an event that fails unexpectedly becomes a
``generic_error`` bad row; a request that fails unexpectedly as a whole answers 400.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from collector.identity import Identities, RequestIdentity, client_ip
from collector.metrics import Metrics
from collector.pipeline import Outcome, Pipeline, RequestInfo
from collector.protocol import PAYLOAD_DATA_PREFIX
from collector.ratelimit import RateLimiter
from collector.sink import KafkaSink, Message, SinkUnavailable
from lvp.config import Settings
from lvp.iglu import Registry

log = logging.getLogger(__name__)
#: The largest body size a bad row reports (int64: what JSON consumers and orjson handle).
_MAX_DECLARED_SIZE = 2**63 - 1

TP2_PATH: Final = "/com.snowplowanalytics.snowplow/tp2"
PIXEL_PATHS: Final = ("/i", "/com.snowplowanalytics.snowplow/i", "/ice.png")
GIF: Final = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)
NO_CACHE: Final = "no-cache, no-store, must-revalidate"
_FORMAT_VIOLATION: Final = "collector_payload_format_violation"


class Refused(Exception):
    """A request the collector refuses, raised by any check of an event route and answered in one
    place (:meth:`Collector._refuse`), as Starlette handles ``HTTPException``.

    ``bad_row`` names the Snowplow bad-row type to record (the request is kept as a bad row, and
    the answer waits for Kafka's acknowledgement of it, like any accepted data); without it the
    request is answered and nothing is kept. The answer is JSON ``{"error": ..., "messages":
    [...]}`` for a bad row, else ``text`` as given."""

    def __init__(
        self,
        status: int,
        text: bytes,
        *,
        media_type: str = "application/json",
        bad_row: str | None = None,
        messages: list[Any] | None = None,
        body: bytes = b"",
        body_size: int | None = None,
        cors: bool = True,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, bad_row or text)
        self.status = status
        self.text = text
        self.media_type = media_type
        self.bad_row = bad_row
        self.messages = messages or []
        self.body = body
        self.body_size = body_size
        self.cors = cors
        self.headers = headers or {}

    @classmethod
    def with_bad_row(
        cls,
        status: int,
        kind: str,
        message: dict[str, Any],
        body: bytes = b"",
        *,
        body_size: int | None = None,
        close: bool = False,
    ) -> Refused:
        """Refused, and the request recorded as a ``kind`` bad row holding ``message``."""
        return cls(
            status,
            orjson.dumps({"error": kind, "messages": [message]}),
            bad_row=kind,
            messages=[message],
            body=body,
            body_size=body_size,
            headers={"Connection": "close"} if close else None,
        )


class _Request:
    """What the handling of one event request has learnt so far, for :meth:`Collector._refuse`."""

    __slots__ = ("ident", "info", "origin")

    def __init__(self, origin: str | None) -> None:
        self.origin = origin
        self.ident: RequestIdentity | None = None
        self.info: RequestInfo | None = None


class Collector:
    """The request handlers, bound to one collector's settings, sink, schemas and metrics."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        identities: Identities,
        sink: KafkaSink,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.identities = identities
        self.sink = sink
        self.metrics = metrics
        self.pipeline = Pipeline(registry, identities, settings.topic_good, settings.topic_bad)
        max_message = getattr(sink, "max_message_bytes", None)
        if isinstance(max_message, int):
            self.pipeline.max_message_bytes = max_message - 4096  # room for the key and overhead
        origins = settings.cors_origin_list
        self.any_origin = "*" in origins
        self.origins = frozenset(o.rstrip("/") for o in origins if o != "*")
        self.max_body = settings.max_body_bytes
        self.max_events = settings.max_events_per_request
        self.retry_after = str(settings.retry_after_s)
        self.body_timeout_s = settings.request_timeout_s
        self._last_503_log = -1e9
        #: called with every batch of messages Kafka acknowledged (dev mode's /micro/* store)
        self.on_published: Callable[[list[Message]], None] | None = None
        self.limiter = (
            RateLimiter(settings.rate_limit_per_ip, identities.key)
            if settings.rate_limit_per_ip > 0
            else None
        )

    def routes(self) -> list[Route]:
        return [
            Route(TP2_PATH, self.tp2, methods=["POST"]),
            Route(TP2_PATH, self.preflight, methods=["OPTIONS"]),
            *(Route(p, self.pixel, methods=["GET", "HEAD"]) for p in PIXEL_PATHS),
            *(Route(p, self.preflight, methods=["OPTIONS"]) for p in PIXEL_PATHS),
            Route("/health", self.health, methods=["GET", "HEAD"]),
            Route("/sink-health", self.sink_health, methods=["GET", "HEAD"]),
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
            Route("/robots.txt", self.robots, methods=["GET"]),
        ]

    # -- CORS --
    def _allowed_origin(self, origin: str | None) -> bool:
        if origin is None:
            return True
        return self.any_origin or origin.rstrip("/") in self.origins

    @staticmethod
    def _cors(headers: dict[str, str], origin: str | None) -> None:
        if origin:
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Allow-Credentials"] = "true"
            headers["Vary"] = "Origin"

    async def preflight(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin is None or not self._allowed_origin(origin):
            self.metrics.request("options", 403)
            return Response("origin not allowed", status_code=403, media_type="text/plain")
        headers = {
            "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type, SP-Anonymous",
            "Access-Control-Max-Age": "3600",
        }
        self._cors(headers, origin)
        self.metrics.request("options", 200)
        return Response(status_code=200, headers=headers)

    # -- the event routes --
    def _identity(self, request: Request, nuid_param: str | None) -> RequestIdentity:
        headers = request.headers
        cookies = request.cookies if "cookie" in headers else {}
        client = request.client
        return self.identities.for_request(headers, cookies, client.host if client else None, nuid_param)

    def _respond(
        self,
        route: str,
        status: int,
        body: bytes,
        media_type: str,
        origin: str | None,
        ident: RequestIdentity | None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        headers = dict(headers) if headers else {}
        self._cors(headers, origin)
        response = Response(body, status_code=status, headers=headers, media_type=media_type)
        if ident is not None and ident.set_cookie and status < 500:
            response.headers.append("Set-Cookie", self.identities.cookie_header(ident.nuid))
        self.metrics.request(route, status)
        return response

    async def tp2(self, request: Request) -> Response:
        return await self._handle("tp2", request, self._tp2)

    async def pixel(self, request: Request) -> Response:
        return await self._handle("i", request, self._pixel)

    async def _handle(
        self,
        route: str,
        request: Request,
        handler: Callable[[Request, _Request], Awaitable[Response]],
    ) -> Response:
        """Runs an event route's ``handler``; every refusal it raises is answered here, and no
        exception escapes (never a 500)."""
        state = _Request(request.headers.get("origin"))
        try:
            try:
                self._admit(request, state.origin)
                return await handler(request, state)
            except Refused as refusal:
                return await self._refuse(route, refusal, state)
        except ClientDisconnect:  # the client went away before sending its body: nobody to answer
            self.metrics.request(route, 499)
            return Response(status_code=400)
        except Exception as exc:
            return self._unexpected(route, exc, state.origin)

    async def _refuse(self, route: str, refusal: Refused, state: _Request) -> Response:
        """The one answer to a refused request: its bad row published (and acknowledged) first
        when it has one, then the status and reason."""
        ident = None
        kind = refusal.bad_row
        if kind is not None and state.info is not None:
            row = self.pipeline.request_bad_row(
                kind, refusal.messages, refusal.body, state.info, body_size=refusal.body_size
            )
            problem = await self._publish([row])
            if problem is not None:
                refusal = self._unavailable(problem)
            else:
                self.metrics.bad(kind)
                ident = state.ident
        origin = state.origin if refusal.cors else None
        return self._respond(
            route, refusal.status, refusal.text, refusal.media_type, origin, ident, refusal.headers
        )

    def _admit(self, request: Request, origin: str | None) -> None:
        """Refuses a request from an origin not allowed, over the per-client rate, or while Kafka
        is unreachable."""
        if not self._allowed_origin(origin):
            raise Refused(403, b"origin not allowed", media_type="text/plain", cors=False)
        if self.limiter is not None:
            client = request.client
            peer = client.host if client else None
            wait = self.limiter.check(client_ip(request.headers, peer, self.identities.trusted_proxies))
            if wait > 0:
                retry = str(self.limiter.retry_after(wait))
                raise Refused(
                    429, b"too many requests", media_type="text/plain", headers={"Retry-After": retry}
                )
        if not self.sink.healthy:
            raise self._unavailable("Kafka is unreachable")

    async def _publish(self, messages: list[Message]) -> str | None:
        """None when Kafka acknowledged everything, else why not."""
        try:
            await self.sink.publish(messages)
        except SinkUnavailable as exc:
            return str(exc)
        if self.on_published is not None:
            self.on_published(messages)
        return None

    def _count(self, outcome: Outcome) -> None:
        self.metrics.good(outcome.good)
        for kind, n in outcome.bad.items():
            self.metrics.bad(kind, n)

    async def _tp2(self, request: Request, state: _Request) -> Response:
        query = request.scope.get("query_string", b"").decode("latin-1")
        ident = state.ident = self._identity(request, request.query_params.get("nuid") if query else None)
        state.info = RequestInfo(ident, int(time.time() * 1000), request.headers, "tp2", query)
        try:
            async with asyncio.timeout(self.body_timeout_s):
                body, size, too_big = await self._read_body(request)
        except TimeoutError:  # a slow (slowloris) client: nothing was received, nothing kept
            raise Refused(408, b'{"error":"request timeout"}', headers={"Connection": "close"}) from None
        if too_big:
            msg = {
                "maximumAllowedSizeBytes": self.max_body,
                "actualSizeBytes": size,
                "expectation": f"a body of at most {self.max_body} bytes (LVP_MAX_BODY_BYTES)",
            }
            # the connection closes: the rest of the body is not read
            raise Refused.with_bad_row(413, "size_violation", msg, body, body_size=size, close=True)
        items, schema = self._envelope(body)
        if len(items) > self.max_events:
            msg = {
                "maximumAllowedEvents": self.max_events,
                "actualEvents": len(items),
                "expectation": f"at most {self.max_events} events (LVP_MAX_EVENTS_PER_REQUEST)",
            }
            raise Refused.with_bad_row(413, "size_violation", msg, body)
        outcome = self.pipeline.process(items, state.info, self.registry.validator(schema))
        return await self._finish("tp2", outcome, state.origin, ident, b"ok", "text/plain")

    async def _pixel(self, request: Request, state: _Request) -> Response:
        query = request.scope.get("query_string", b"").decode("latin-1")
        params: dict[str, str] = {}
        for k, v in request.query_params.multi_items():
            if v and k not in params:
                params[k] = v
        ident = state.ident = self._identity(request, params.get("nuid"))
        state.info = RequestInfo(ident, int(time.time() * 1000), request.headers, "i", query)
        if len(query) > self.max_body:
            msg = {
                "maximumAllowedSizeBytes": self.max_body,
                "actualSizeBytes": len(query),
                "expectation": f"a query string of at most {self.max_body} bytes",
            }
            raise Refused.with_bad_row(413, "size_violation", msg)
        outcome = self.pipeline.process([params], state.info)
        return await self._finish("i", outcome, state.origin, ident, GIF, "image/gif", cache=True)

    async def _read_body(self, request: Request) -> tuple[bytes, int, bool]:
        """(body, size, too_big). Over LVP_MAX_BODY_BYTES only the first bytes are kept (for the
        bad row) and ``size`` is the declared Content-Length or what was read."""
        length = request.headers.get("content-length")
        declared = None
        if length is not None and length.isascii() and length.isdigit():
            # what a bad row (JSON, int64) can report: a longer claim is reported as the largest
            declared = min(int(length), _MAX_DECLARED_SIZE) if len(length) <= 19 else _MAX_DECLARED_SIZE
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            chunks.append(chunk)
            if size > self.max_body:
                return b"".join(chunks)[: self.max_body], max(size, declared or 0), True
        return b"".join(chunks), size, False

    def _envelope(self, body: bytes) -> tuple[list[Any], str]:
        """(events, payload_data schema URI); refused (400, a bad row) when the body is not one."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            problem = {"error": "NotJSON", "message": f"the body is not JSON: {exc}"}
            raise Refused.with_bad_row(400, _FORMAT_VIOLATION, problem, body) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("schema"), str) or "data" not in doc:
            problem = {"error": "NotIglu", "message": "expected a payload_data envelope {schema, data}"}
            raise Refused.with_bad_row(400, _FORMAT_VIOLATION, problem, body)
        schema = doc["schema"]
        if not schema.startswith(PAYLOAD_DATA_PREFIX) or schema not in self.registry:
            problem = {
                "error": "CriterionMismatch",
                "message": f"schema {schema[:200]!r} is not a known payload_data version",
            }
            raise Refused.with_bad_row(400, _FORMAT_VIOLATION, problem, body)
        data = doc["data"]
        if not isinstance(data, list) or not data:
            problem = {"error": "ValidationError", "message": "payload_data `data` must be a non-empty array"}
            raise Refused.with_bad_row(400, _FORMAT_VIOLATION, problem, body)
        return data, schema

    async def _finish(
        self,
        route: str,
        outcome: Outcome,
        origin: str | None,
        ident: RequestIdentity,
        ok_body: bytes,
        media_type: str,
        *,
        cache: bool = False,
    ) -> Response:
        problem = await self._publish(outcome.messages)
        if problem is not None:
            raise self._unavailable(problem)
        self._count(outcome)
        if outcome.good:
            headers = {"Cache-Control": NO_CACHE} if cache else None
            return self._respond(route, 200, ok_body, media_type, origin, ident, headers)
        text = orjson.dumps({"error": "no good events", "bad": outcome.bad})
        return self._respond(route, 400, text, "application/json", origin, ident)

    def _unavailable(self, problem: str) -> Refused:
        """503 + Retry-After: Kafka could not acknowledge (nothing of the request is kept)."""
        now = time.monotonic()
        if now - self._last_503_log >= 10.0:  # at most one line per 10 s during an outage
            self._last_503_log = now
            log.warning("answering 503 (Kafka): %s", problem)
        text = orjson.dumps({"error": "unavailable", "message": problem})
        return Refused(503, text, headers={"Retry-After": self.retry_after})

    def _unexpected(self, route: str, exc: Exception, origin: str | None) -> Response:
        # only the exception type: its message could quote request data
        log.error("unexpected %s while handling %s", type(exc).__name__, route)
        return self._respond(
            route, 400, b'{"error":"could not process the request"}', "application/json", origin, None
        )

    # -- operational routes --
    async def health(self, request: Request) -> Response:
        self.metrics.request("health", 200)
        return Response("ok", media_type="text/plain")

    async def sink_health(self, request: Request) -> Response:
        if self.sink.healthy:
            self.metrics.request("sink-health", 200)
            return Response("ok", media_type="text/plain")
        self.metrics.request("sink-health", 503)
        return Response(
            "Kafka is unreachable",
            status_code=503,
            media_type="text/plain",
            headers={"Retry-After": self.retry_after},
        )

    async def metrics_endpoint(self, request: Request) -> Response:
        body, content_type = self.metrics.render()
        return Response(body, headers={"Content-Type": content_type})

    async def robots(self, request: Request) -> Response:
        return Response("User-agent: *\nDisallow: /\n", media_type="text/plain")
